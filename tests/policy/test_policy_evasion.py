"""Deny rules cannot be evaded by spelling (case, encodings, compatibility characters, `;`, `%2F`,
trailing dots, repeated query parameters), cover every port unless they name ports, and name
themselves in the decision; allow rules stay exact. Each attack has a control: the disguise does slip
past a literal, case-sensitive match of the deny glob (what the matcher did before), so only the
protection catches it."""

from __future__ import annotations

import pytest

from jupyter_openshell.policy import NO_RULE, RequestInfo, parse_policy
from jupyter_openshell.policy._glob import compile_path_glob

DENY_ADMIN = parse_policy(
    """\
network:
  egress:
    - host: api.example.com
      paths: ["/admin/**"]
      action: deny
    - host: api.example.com
      action: allow
"""
).compile()
LITERAL_DENY = compile_path_glob("/admin/**")  # the deny glob as matched before: exact bytes, exact case


def _get(compiled, path: str, port: int = 443, method: str = "GET", **kw):
    return compiled.decide(RequestInfo(method, "https", "api.example.com", port, path, **kw))


@pytest.mark.parametrize(
    "path",
    [
        "/ADMIN/x",
        "/Admin/x",
        "/%41dmin/x",  # an encoded unreserved letter is decoded (and forwarded decoded)
        "/%61DMIN/x",
        "/%2561dmin/x",  # double encoding: a server that decodes twice reads /admin
        "/%252561dmin/x",  # triple
        "/%25%36%31dmin/x",
        "/adm%EF%BD%89n/x",  # full-width i (NFKC: i)
        "/%EF%BC%A1DMIN/x",  # full-width A
        "/admin./x",  # Windows servers drop trailing dots and spaces of names
        "/admin%20/x",
        "/admin;jsessionid=1/x",  # Tomcat routes on the path without ;parameters
        "/ADMIN;x/x",
        "/admin%2Fx",  # an encoded / read as / by the server
        "/public/..%252Fadmin/x",  # decoded twice: /public/../admin/x
        "/x/%2e%2e/admin/x",
        "//admin//x",
        "/admin",
    ],
)
def test_disguised_paths_cannot_pass_a_deny_rule(path):
    d = _get(DENY_ADMIN, path)
    assert not d.allowed and d.status in (400, 403), d
    if d.status == 403:
        assert d.rule.startswith("network.egress[0] (deny, line 3)")


@pytest.mark.parametrize("path", ["/ADMIN/x", "/%41dmin/x", "/%2561dmin/x", "/adm%EF%BD%89n/x", "/admin./x",
                                  "/admin%2Fx", "/Admin;x/x"])
def test_control_each_disguise_slips_past_a_literal_match(path):
    """CONTROL: the normalised path (what is forwarded) does not literally match the deny glob, so a
    matcher without case folding and alternate readings would have allowed it."""
    d = _get(DENY_ADMIN, path)
    assert LITERAL_DENY.match(d.path) is None
    assert not d.allowed


def test_allow_rules_stay_case_sensitive_and_exact():
    c = parse_policy(
        'network:\n  egress:\n    - host: api.example.com\n      paths: ["/api/**"]\n      action: allow\n'
    ).compile()
    assert _get(c, "/api/x").allowed
    assert _get(c, "/%61pi/x").allowed  # an encoded unreserved letter is the letter
    for path in ("/API/x", "/Api/x", "/%2561pi/x", "/ap%EF%BD%89/x", "/api./x"):
        d = _get(c, path)
        assert not d.allowed and d.rule == NO_RULE, path


def test_encoded_slash_must_be_allowed_as_both_readings():
    c = parse_policy(
        "network:\n  egress:\n    - host: api.example.com\n      paths:\n"
        '        - "/pkg/*"\n        - "/npm/**"\n      action: allow\n'
    ).compile()
    assert _get(c, "/npm/@types%2Fnode").allowed  # npm's scoped package names: /npm/@types/node too
    assert _get(c, "/pkg/a").allowed
    d = _get(c, "/pkg/a%2Fb")  # one segment literally, two once a server decodes %2F
    assert not d.allowed and "%2F read as /" in d.reason
    for bad in ("/pkg/..%2Fadmin", "/pkg/a%2F%2Fb", "/pkg/a%2F.", "/pkg/%2F"):
        assert _get(c, bad).status == 400, bad


def test_a_deny_rule_without_ports_covers_every_port_allow_rules_keep_80_443():
    c = parse_policy(
        """\
network:
  egress:
    - host: api.example.com
      paths: ["/admin/**"]
      action: deny
    - host: api.example.com
      ports: [443, 8443]
      action: allow
    - host: open.example.com
      action: allow
"""
    ).compile()
    assert not _get(c, "/admin/x", port=8443).allowed
    assert _get(c, "/other", port=8443).allowed
    assert c.decide(RequestInfo("GET", "http", "open.example.com", 80, "/")).allowed
    assert not c.decide(RequestInfo("GET", "https", "open.example.com", 8443, "/")).allowed
    control = parse_policy(
        "network:\n  egress:\n    - host: api.example.com\n      ports: [80, 443]\n"
        '      paths: ["/admin/**"]\n      action: deny\n    - host: api.example.com\n'
        "      ports: [443, 8443]\n      action: allow\n"
    ).compile()
    assert _get(control, "/admin/x", port=8443).allowed  # CONTROL: the old default, spelled out


def test_deny_query_matchers_fold_case_and_match_any_occurrence():
    c = parse_policy(
        """\
network:
  egress:
    - host: api.example.com
      paths:
        - path: "/search"
          query: {"debug": "1"}
      action: deny
    - host: api.example.com
      action: allow
"""
    ).compile()
    for query in ("debug=1", "DEBUG=1", "debug=0&debug=1", "debug=%31", "debug=%2531", "x=1;debug=1"):
        assert not _get(c, "/search", query=query).allowed, query
    assert _get(c, "/search", query="debug=0").allowed  # CONTROL
    assert _get(c, "/search").allowed


def test_an_explicit_final_deny_is_named_and_no_match_says_default_deny():
    text = """\
network:
  egress:
    - host: api.example.com
      action: allow

    - action: deny
"""
    c = parse_policy(text).compile()
    d = c.decide(RequestInfo("GET", "https", "other.example.com", 8080, "/"))
    assert d.rule == "network.egress[1] (deny, line 6): any host, any port" and d.rule_index == 1
    assert d.reason == f"denied by {d.rule}"
    bare = parse_policy("network:\n  egress:\n    - host: api.example.com\n      action: allow\n").compile()
    d = bare.decide(RequestInfo("GET", "https", "other.example.com", 8080, "/"))
    assert d.rule == NO_RULE == "no rule matched (default deny)" and d.rule_index is None


def test_any_method_allowed_tells_where_an_override_could_change_the_outcome():
    c = parse_policy(
        """\
network:
  egress:
    - host: a.example.com
      paths:
        - path: "/ro/**"
          methods: ["GET", "POST"]
        - "/rw/**"
      action: allow
    - host: a.example.com
      paths:
        - path: "/mixed/**"
          methods: ["DELETE"]
      action: deny
    - host: a.example.com
      paths: ["/mixed/**"]
      action: allow
"""
    ).compile()

    def every(path: str) -> bool:
        return c.any_method_allowed(RequestInfo("POST", "https", "a.example.com", 443, path))

    assert every("/rw/x")
    assert not every("/ro/x")
    assert not every("/mixed/x")  # a deny rule for DELETE comes first
    assert not every("/MIXED/x")  # ... whatever the case
    assert not every("/rw/x;p=1/../../ro/y")  # the ;params reading is /ro/y
    assert not every("/nowhere")


def test_a_refused_connect_is_a_connect_decision_with_host_level_variants():
    c = parse_policy(
        "network:\n  egress:\n    - host: a.example.com\n      action: allow\n    - action: deny\n"
    ).compile()
    d = c.decide_connect("pypi.org", 443)
    assert (d.method, d.path, d.status) == ("CONNECT", "", 403)
    assert d.rule.startswith("network.egress[1] (deny, line 5)")
    assert [v.command for v in d.variants] == ["%policy allow https://pypi.org/**",
                                               "%policy allow * https://pypi.org/**"]
    assert "CONNECT" not in d.hint and 'host: "pypi.org"' in d.hint
    assert c.decide_connect("bad host", 443).status == 400
