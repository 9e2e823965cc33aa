"""Hints are the request the user made: `rule_variants` (exact, path glob, whole host; host-level for a
refused CONNECT), `Decision.variants`/`hint`, and `rule_for` for `%policy allow [METHOD] URL` with
globs. Every variant's rule allows the request it was offered for, and no more than its label says."""

from __future__ import annotations

import pytest

from jupyter_openshell.policy import (
    BadRequest,
    RequestInfo,
    add_rule,
    parse_policy,
    rule_for,
    rule_variants,
)

DENY_ALL = "network:\n  egress:\n    - action: deny\n"


def _with(rule: dict) -> object:
    return parse_policy(add_rule(DENY_ALL, rule)).compile()


def _allowed(compiled, method: str, url: str) -> bool:
    return compiled.decide(RequestInfo.from_url(method, url)).allowed


def test_variants_of_a_denied_get_are_exact_glob_and_host():
    vs = rule_variants("GET", "https://pypi.org/simple/x/")
    assert [v.kind for v in vs] == ["exact", "glob", "host"]
    assert [v.command for v in vs] == [
        "%policy allow GET https://pypi.org/simple/x/",
        "%policy allow https://pypi.org/simple/**",
        "%policy allow https://pypi.org/**",
    ]
    assert [v.label for v in vs] == ["only GET /simple/x/", "GET, HEAD on /simple/ and below",
                                     "GET, HEAD on any path of pypi.org"]
    exact, glob, host = (_with(v.rule) for v in vs)
    for c in (exact, glob, host):
        assert _allowed(c, "GET", "https://pypi.org/simple/x/")  # each allows the request itself
        assert not _allowed(c, "POST", "https://pypi.org/simple/x/")
    assert not _allowed(exact, "GET", "https://pypi.org/simple/y/")
    assert not _allowed(exact, "HEAD", "https://pypi.org/simple/x/")
    assert _allowed(glob, "HEAD", "https://pypi.org/simple/y/")
    assert not _allowed(glob, "GET", "https://pypi.org/other")
    assert _allowed(host, "GET", "https://pypi.org/other")
    assert not _allowed(host, "GET", "https://files.pythonhosted.org/")
    for v in vs:
        assert v.yaml.startswith('- host: "pypi.org"') and "CONNECT" not in v.yaml
        assert rule_for(v.method, v.url) == v.rule  # the command adds exactly the variant's rule


def test_variants_of_a_denied_write_keep_the_method_and_the_port():
    vs = rule_variants("POST", "http://api.example.com:8080/v1/items?x=1")
    assert [v.command for v in vs] == [
        "%policy allow POST http://api.example.com:8080/v1/items",
        "%policy allow POST http://api.example.com:8080/v1/**",
        "%policy allow POST http://api.example.com:8080/**",
    ]
    assert all(v.rule["port"] == 8080 for v in vs)
    assert vs[2].label == "POST on any path of api.example.com:8080"
    assert [v.kind for v in rule_variants("GET", "https://example.com/")] == ["exact", "host"]


def test_decision_hint_is_the_narrowest_variant_of_the_request_made():
    c = parse_policy(DENY_ALL).compile()
    d = c.decide(RequestInfo.from_url("GET", "https://pypi.org/simple/x/"))
    expected = rule_variants("GET", "https://pypi.org/simple/x/")
    assert [v.command for v in d.variants] == [v.command for v in expected]
    assert d.hint == d.variants[0].yaml and '"/simple/x/"' in d.hint and '["GET"]' in d.hint
    assert d.to_dict()["variants"][1]["command"] == "%policy allow https://pypi.org/simple/**"
    ok = parse_policy(add_rule(DENY_ALL, rule_for("GET", "https://pypi.org/**"))).compile()
    assert ok.decide(RequestInfo.from_url("GET", "https://pypi.org/x")).variants == []
    assert c.decide(RequestInfo.from_url("GET", "https://pypi.org/%zz")).hint is None  # a 400 has none


def test_connect_variants_are_host_level():
    vs = rule_variants("CONNECT", "https://pypi.org:443")
    assert [(v.kind, v.command) for v in vs] == [("host", "%policy allow https://pypi.org/**"),
                                                 ("host", "%policy allow * https://pypi.org/**")]
    assert vs[1].rule == {"host": "pypi.org", "action": "allow"}
    assert rule_for("CONNECT", "https://pypi.org/") == vs[0].rule


@pytest.mark.parametrize(
    "method, url, rule",
    [
        ("GET", "https://example.com/", {"host": "example.com", "paths": [{"path": "/", "methods": ["GET"]}],
                                         "action": "allow"}),
        ("", "https://example.com/",
         {"host": "example.com", "paths": [{"path": "/", "methods": ["GET", "HEAD"]}], "action": "allow"}),
        ("get", "https://example.com/**", {"host": "example.com", "methods": ["GET"], "action": "allow"}),
        ("", "https://Example.COM./a/**", {"host": "example.com",
                                           "paths": [{"path": "/a/**", "methods": ["GET", "HEAD"]}],
                                           "action": "allow"}),
        ("*", "http://example.com:8080/**", {"host": "example.com", "port": 8080, "action": "allow"}),
        ("PUT", "https://example.com/a/*/b", {"host": "example.com",
                                              "paths": [{"path": "/a/*/b", "methods": ["PUT"]}],
                                              "action": "allow"}),
    ],
)
def test_rule_for_reads_methods_and_globs(method, url, rule):
    assert rule_for(method, url) == rule


def test_a_glob_rule_covers_the_next_path_without_a_second_rule():
    c = _with(rule_for("GET", "https://example.com/**"))
    assert _allowed(c, "GET", "https://example.com/") and _allowed(c, "GET", "https://example.com/other/x")
    assert not _allowed(c, "POST", "https://example.com/other")


@pytest.mark.parametrize("method, url", [("GET", "ftp://example.com/"), ("GET", "example.com/"),
                                         ("G ET", "https://example.com/"), ("GET", "https://exa mple.com/")])
def test_rule_for_refuses_what_it_cannot_evaluate(method, url):
    with pytest.raises(BadRequest):
        rule_for(method, url)
