"""JSON Schema, `suggest`, `rule_for`/`rule_yaml`, and comment-preserving `add_rule`/`set_mode`."""

from __future__ import annotations

import io

import jsonschema
import pytest
from policy_seed import SEED
from ruamel.yaml import YAML

from jupyter_openshell.policy import (
    BadRequest,
    PolicyError,
    RequestInfo,
    add_rule,
    json_schema,
    parse_policy,
    rule_for,
    rule_yaml,
    set_mode,
    suggest,
)

pytestmark = pytest.mark.usefixtures("yaml_loader")


def _data(text: str):
    y = YAML(typ="safe")
    return y.load(io.StringIO(text))


def test_schema_accepts_seed_and_rejects_unknown_keys():
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    v = jsonschema.Draft202012Validator(schema)
    v.validate(_data(SEED))
    v.validate(_data("filesystem: {read_only: [/usr]}\nresources: {memory: 2Gi, timeout: null}\ngpu: true\n"))
    assert list(v.iter_errors(_data(SEED.replace("paths:", "pathes:", 1))))
    assert list(v.iter_errors(_data(SEED.replace("action: allow", "action: permit"))))
    assert list(v.iter_errors(_data(SEED.replace("type: bearer", "type: basic"))))


def test_rule_for_is_the_narrowest_rule():
    assert rule_for("GET", "https://API.example.com./v1/users/%31?x=1") == {
        "host": "api.example.com",
        "paths": [{"path": "/v1/users/1", "methods": ["GET"]}],
        "action": "allow",
    }
    assert rule_for("POST", "http://127.1:8080/")["host"] == "127.0.0.1"
    assert rule_for("POST", "http://127.1:8080/")["port"] == 8080
    with pytest.raises(BadRequest):
        rule_for("GET", "https://h.example/%2f")
    with pytest.raises(BadRequest):
        rule_for("GET", "/relative")


def test_rule_yaml_is_valid_policy_yaml():
    rule = rule_for("DELETE", "https://h.example:8443/a b")
    text = "network:\n  egress:\n" + rule_yaml(rule, indent="    ") + "\n"
    p = parse_policy(text)
    d = p.compile().decide(RequestInfo.from_url("DELETE", "https://h.example:8443/a%20b"))
    assert d.allowed


def test_add_rule_preserves_comments_and_goes_before_the_default_deny():
    text = "# my policy\n" + SEED.replace(
        "    - action: deny\n", "    # everything else\n    - action: deny\n"
    )
    out = add_rule(text, rule_for("POST", "https://api.example.com/v1/users/1"))
    assert out.startswith("# my policy\n")
    assert "# everything else" in out
    p = parse_policy(out)
    assert [r.action for r in p.egress] == ["allow", "allow", "deny"]
    assert p.egress[1].paths[0].path == "/v1/users/1"
    assert p.compile().decide(RequestInfo.from_url("POST", "https://api.example.com/v1/users/1")).allowed
    assert 'token_from_secret: "openai-api-key"' in out  # quotes preserved
    start = parse_policy(add_rule(SEED, {"host": "x.example", "action": "deny"}, position="start"))
    assert start.egress[0].host == "x.example"
    empty = parse_policy(add_rule("", {"host": "x.example", "action": "allow"}))
    assert empty.egress[0].host == "x.example"
    with pytest.raises(PolicyError):
        add_rule(SEED, {"host": "*", "action": "allow"})


def test_set_mode():
    out = set_mode("# keep me\n" + SEED, "audit")
    assert out.startswith("# keep me\n") or "# keep me" in out
    assert parse_policy(out).mode == "audit"
    assert parse_policy(set_mode(out, "enforce")).mode == "enforce"
    nested = SEED.replace("network:\n", "network:\n  mode: enforce\n", 1)
    assert parse_policy(set_mode(nested, "audit")).mode == "audit"
    with pytest.raises(ValueError):
        set_mode(SEED, "permissive")


def test_suggest_builds_a_minimal_policy_from_flows():
    flows = [
        {"method": "GET", "scheme": "https", "host": "api.example.com", "port": 443, "path": "/v1/users/1"},
        {"method": "GET", "scheme": "https", "host": "api.example.com", "port": 443, "path": "/v1/users/42"},
        {
            "method": "GET",
            "scheme": "https",
            "host": "API.example.com",
            "port": 443,
            "path": "/v1/items/3f2b8a9c-1d2e-4f5a-9b8c-7d6e5f4a3b2c",
        },
        {"method": "POST", "scheme": "https", "host": "api.example.com", "port": 443, "path": "/v1/users/7"},
        {"method": "GET", "scheme": "http", "host": "127.0.0.1", "port": 8080, "path": "/health"},
        {"method": "POST", "host": "inference.local", "port": 80, "path": "/v1/chat", "route": "routes[0]"},
        {"method": "GET", "host": "bad.example", "port": 443, "path": "/%2f"},
        "not a record",
    ]
    text = suggest(flows)
    p = parse_policy(text)
    assert [r.host for r in p.egress] == ["127.0.0.1", "api.example.com", None]
    assert p.egress[0].ports == (8080,)
    api = p.egress[1]
    assert {(x.path, x.methods) for x in api.paths} == {
        ("/v1/users/*", ("GET", "POST")),
        ("/v1/items/*", ("GET",)),
    }
    c = p.compile()
    for f in flows[:5]:
        url = f"{f['scheme']}://{f['host']}:{f['port']}{f['path']}"
        assert c.decide(RequestInfo.from_url(f["method"], url)).allowed, url
    assert not c.decide(RequestInfo.from_url("DELETE", "https://api.example.com/v1/users/1")).allowed
    assert not c.decide(RequestInfo.from_url("POST", "http://inference.local/v1/chat")).allowed
    assert "from 5 observed requests" in text


def test_suggest_collapses_many_paths_under_one_prefix():
    flows = [
        {"method": "GET", "host": "h.example", "port": 443, "path": f"/docs/page-{c}"} for c in "abcdefghij"
    ]
    p = parse_policy(suggest(flows))
    assert [x.path for x in p.egress[0].paths] == ["/docs/**"]
