"""Presets: the public API, `- preset: NAME` entries (validated with file:line:column and "did you
mean"), their expansion (narrow: named hosts, port 443, read-only), `add_rule` and the schema."""

from __future__ import annotations

import jsonschema
import pytest

from jupyter_openshell.policy import (
    PolicyError,
    Preset,
    RequestInfo,
    add_rule,
    effective_yaml,
    expand_preset,
    json_schema,
    parse_policy,
    presets,
)
from jupyter_openshell.policy._parse import _yaml

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def test_presets_api():
    found = presets()
    assert list(found) == ["pypi", "conda", "huggingface", "github", "npm"]
    for name, preset in found.items():
        assert isinstance(preset, Preset) and preset.name == name and preset.description
        assert isinstance(preset.rules, list) and preset.rules == expand_preset(name)
        assert parse_policy("network:\n  egress:\n" + _indent(preset.yaml)).egress  # its YAML is valid
    found["pypi"].rules.clear()  # copies: the next call is unchanged
    assert presets()["pypi"].rules and expand_preset("pypi")
    with pytest.raises(KeyError):
        expand_preset("pypy")


def _indent(text: str) -> str:
    return "".join(f"    {line}\n" for line in text.splitlines())


@pytest.mark.parametrize("name", list(presets()))
def test_every_preset_is_narrow(name):
    for rule in parse_policy(f"network:\n  egress:\n    - preset: {name}\n").egress:
        assert rule.action == "allow" and rule.ports == (443,) and "*" not in (rule.host or "*")
        assert rule.preset == name and rule.entry == 0 and rule.line == 3
        methods = set(rule.methods or ())
        for p in rule.paths or ():
            methods |= set(p.methods or ())
        assert methods and methods <= {"GET", "HEAD", "POST"}
        posts = [p.path for p in rule.paths or () if "POST" in (p.methods or ())]
        assert posts in ([], ["/*/*/git-upload-pack"])  # git fetch only: never receive-pack (push)


def test_pypi_preset_allows_what_pip_fetches_and_nothing_else():
    c = parse_policy("network:\n  egress:\n    - preset: pypi\n    - action: deny\n").compile()

    def ok(method: str, url: str) -> bool:
        return c.decide(RequestInfo.from_url(method, url)).allowed

    assert ok("GET", "https://pypi.org/simple/requests/")
    assert ok("GET", "https://pypi.org/pypi/pip/json")
    assert ok("GET", "https://files.pythonhosted.org/packages/ab/cd/requests-2.0-py3-none-any.whl")
    assert ok("HEAD", "https://files.pythonhosted.org/packages/ab/cd/x.tar.gz.metadata")
    assert not ok("POST", "https://pypi.org/simple/requests/")
    assert not ok("POST", "https://upload.pypi.org/legacy/")  # twine upload
    assert not ok("GET", "https://pypi.org/account/login/")
    assert not ok("GET", "http://pypi.org:80/simple/requests/")  # port 443 only
    assert not ok("GET", "https://evil.pythonhosted.org/packages/x")
    d = c.decide(RequestInfo.from_url("GET", "https://pypi.org/simple/x/"))
    assert d.rule == ("network.egress[0] (allow, line 3, preset pypi): pypi.org ports 443 paths "
                      "/simple/** GET,HEAD; /pypi/*/json GET,HEAD; /pypi/*/*/json GET,HEAD")


def test_github_preset_clones_but_never_pushes():
    c = parse_policy("network:\n  egress:\n    - preset: github\n").compile()
    assert c.decide(RequestInfo.from_url("POST", "https://github.com/o/r.git/git-upload-pack")).allowed
    assert c.decide(RequestInfo.from_url("GET", "https://github.com/o/r.git/info/refs")).allowed
    assert not c.decide(RequestInfo.from_url("POST", "https://github.com/o/r.git/git-receive-pack")).allowed
    assert not c.decide(RequestInfo.from_url("POST", "https://api.github.com/repos/o/r/issues")).allowed
    assert c.decide(RequestInfo.from_url("GET", "https://raw.githubusercontent.com/o/r/main/f")).allowed
    assert not c.decide(RequestInfo.from_url("GET", "https://gist.githubusercontent.com/x")).allowed


def test_preset_entries_expand_in_place_with_addresses_and_keep_indexes_straight():
    text = """\
network:
  egress:
    - host: a.example.com
      action: allow
    - preset: npm
      addresses: ["127.0.0.1"]
    - preset: conda
    - action: deny
"""
    p = parse_policy(text)
    assert [(r.index, r.entry, r.preset, r.host) for r in p.egress] == [
        (0, 0, None, "a.example.com"),
        (1, 1, "npm", "registry.npmjs.org"),
        (2, 2, "conda", "conda.anaconda.org"),
        (3, 2, "conda", "repo.anaconda.com"),
        (4, 3, None, None),
    ]
    assert p.egress[1].addresses == ("127.0.0.1",) and p.egress[2].addresses == ()
    d = p.compile().decide(RequestInfo.from_url("GET", "https://other.example.com/"))
    assert (d.rule_index, d.rule) == (4, "network.egress[3] (deny, line 8): any host, any port")
    npm = p.compile().decide(RequestInfo.from_url("GET", "https://registry.npmjs.org/@types%2Fnode"))
    assert npm.allowed and npm.admits("127.0.0.1")
    shown = effective_yaml(p)
    assert "# network.egress[2]: preset conda" in shown and 'host: "repo.anaconda.com"' in shown
    assert parse_policy(text.replace("preset: npm", "preset: npm ")).version == p.version


@pytest.mark.parametrize(
    "entry, field, line, message",
    [
        ("- preset: pipy", "network.egress[1].preset", 5, "did you mean 'pypi'?"),
        ("- preset: HuggingFace", "network.egress[1].preset", 5, "did you mean 'huggingface'?"),
        ("- preset: 3", "network.egress[1].preset", 5, "unknown preset"),
        ("- preset: pypi\n      action: allow", "network.egress[1].action", 6, "unknown key 'action'"),
        ("- preset: pypi\n      addresses: [pypi.org]", "network.egress[1].addresses[0]", 6, "is a name"),
        ("- preset: pypi\n      adresses: []", "network.egress[1].adresses", 6, "did you mean 'addresses'?"),
    ],
)
def test_preset_entry_errors_name_file_line_column_and_a_fix(entry, field, line, message, yaml_loader):
    text = f"network:\n  egress:\n    - host: a.example.com\n      action: allow\n    {entry}\n"
    with pytest.raises(PolicyError) as exc:
        parse_policy(text, source="p.yaml")
    issue = next(i for i in exc.value.issues if i.field == field)
    assert message in issue.message and issue.file == "p.yaml" and issue.line == line and issue.column > 0
    assert issue.expected and issue.example
    assert f"p.yaml:{line}:{issue.column}" in str(exc.value)


def test_addresses_on_rules_and_backends_are_validated():
    ok = parse_policy(
        'network:\n  egress:\n    - host: a.example.com\n      addresses: ["127.1", "10.0.0.0/8", "::1"]\n'
        "      action: allow\n"
    )
    assert ok.egress[0].addresses == ("127.0.0.1", "10.0.0.0/8", "::1")
    with pytest.raises(PolicyError) as exc:
        parse_policy('network:\n  egress:\n    - host: a.example.com\n      addresses: ["10.0.0.1/8"]\n'
                     "      action: deny\n")
    fields = {i.field for i in exc.value.issues}
    assert fields == {"network.egress[0].addresses", "network.egress[0].addresses[0]"}


def test_add_rule_inserts_a_preset_above_the_final_deny_and_keeps_comments():
    text = ("# mine\nnetwork:\n  egress:\n    - host: a.example.com  # keep\n      action: allow\n"
            "    - action: deny\n")
    out = add_rule(text, {"preset": "pypi"})
    assert "# keep" in out and "# mine" in out
    p = parse_policy(out)
    assert [r.preset for r in p.egress] == [None, "pypi", "pypi", None]
    with pytest.raises(PolicyError):
        add_rule(text, {"preset": "nope"})


def test_schema_knows_preset_entries_and_addresses():
    schema = json_schema()
    good = _yaml().load("network:\n  egress:\n    - preset: pypi\n      addresses: ['127.0.0.1']\n"
                        "    - host: a.example.com\n      addresses: ['::1']\n      action: allow\n")
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(good, schema)
    for bad in ("network:\n  egress:\n    - preset: pipy\n",
                "network:\n  egress:\n    - preset: pypi\n      action: allow\n"):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(_yaml().load(bad), schema)
