"""Parsing and validation: the seed documents, defaults of the static sections, the version hash,
and error reports that say file, line, column, field, what was expected and an example fix."""

from __future__ import annotations

import pytest
from policy_seed import SEED, SEED_INFERENCE, SEED_NETWORK

from jupyter_openshell.policy import (
    Filesystem,
    Issue,
    PolicyError,
    Process,
    Resources,
    load_policy_file,
    parse_policy,
)

pytestmark = pytest.mark.usefixtures("yaml_loader")


def errors(text: str) -> list[Issue]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.yaml")
    return list(info.value.issues)


def test_seed_documents_parse_as_written():
    for text in (SEED, SEED_NETWORK, SEED_INFERENCE):
        p = parse_policy(text)
        assert p.warnings == ()
    p = parse_policy(SEED)
    assert p.mode == "enforce"
    assert [r.action for r in p.egress] == ["allow", "deny"]
    assert p.egress[0].host == "api.example.com" and p.egress[0].ports == (80, 443)
    assert [x.path for x in p.egress[0].paths] == ["/v1/users/*", "/v1/data"]
    assert p.egress[0].paths[1].methods == ("GET", "HEAD")
    assert p.egress[1].host is None
    (route,) = p.routes
    assert route.caller_pattern == ".*" and route.strip_caller_auth
    assert route.hosts == ("api.openai.com", "inference.local") and route.paths == ("/**",)
    assert route.backend.host == "api.openai.com" and route.backend.base_path == "/v1"
    assert route.backend.auth.type == "bearer" and route.backend.auth.token_from_secret == "openai-api-key"


def test_static_sections_have_typed_defaults():
    p = parse_policy(SEED)
    assert p.filesystem == Filesystem()
    assert p.process == Process(user="sandbox")
    assert p.resources == Resources(cpu=1.0, memory=2 * 1024**3, pids=256, disk=None, timeout=None)
    assert p.gpu is False


def test_static_sections_parse():
    p = parse_policy("""
filesystem:
  read_only: ["/usr", "/etc//ssl/"]
  read_write: ["/workspace"]
  hidden: ["/etc/shadow"]
process:
  user: agent
resources:
  cpu: "500m"
  memory: "512M"
  pids: 64
  disk: "10Gi"
  timeout: "2h"
gpu: true
""")
    assert p.filesystem == Filesystem(("/usr", "/etc/ssl"), ("/workspace",), ("/etc/shadow",))
    assert p.process.user == "agent"
    assert p.resources == Resources(cpu=0.5, memory=512_000_000, pids=64, disk=10 * 1024**3, timeout=7200.0)
    assert p.gpu is True
    assert (
        parse_policy("process: {user: 1000}\nresources: {memory: 1073741824, timeout: 30}").process.user
        == 1000
    )


def test_version_is_a_content_hash():
    a = parse_policy(SEED)
    assert len(a.version) == 12 and int(a.version, 16) >= 0
    commented = "# a comment\n" + SEED.replace('"api.example.com"', "api.example.com  # the API")
    assert parse_policy(commented).version == a.version
    explicit_defaults = SEED + "mode: enforce\nresources:\n  pids: 256\ngpu: false\n"
    assert parse_policy(explicit_defaults).version == a.version
    assert parse_policy(SEED.replace("/v1/data", "/v1/datb")).version != a.version
    assert parse_policy("mode: audit\n" + SEED).version != a.version


def test_error_carries_file_line_column_field_expected_and_example():
    text = """\
network:
  egress:
    - host: "a.example.com"
      action: allow
    - host: "b.example.com"
      action: allow
    - host: "c.example.com"
      paths:
        - path: "/v1/**"
          methods: ["GET", "get"]
      action: allow
"""
    (issue,) = errors(text)
    assert (issue.file, issue.line, issue.column) == ("p.yaml", 10, 28)
    assert issue.field == "network.egress[2].paths[0].methods[1]"
    assert "did you mean 'GET'" in issue.message
    assert "upper-case method" in issue.expected
    assert issue.example == 'methods: ["GET", "HEAD"]'
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.yaml")
    report = str(info.value)
    assert "p.yaml:10:28" in report and "network.egress[2].paths[0].methods[1]" in report
    assert "expected:" in report and "example:" in report


def test_unknown_keys_are_errors_with_did_you_mean():
    (issue,) = errors(SEED.replace("      paths:\n", "      pathes:\n", 1))
    assert issue.field == "network.egress[0].pathes"
    assert "did you mean 'paths'" in issue.message
    assert (issue.line, issue.column) == (4, 7)
    assert issue.example == "rename 'pathes' to 'paths'"
    (top,) = errors("netwrok: {}\n")
    assert "did you mean 'network'" in top.message and top.line == 1
    auth = errors(SEED.replace("token_from_secret", "token_from_secrets"))
    assert [i.field for i in auth] == [
        "inference.routes[0].backend.auth",
        "inference.routes[0].backend.auth.token_from_secrets",
    ]
    assert "no `token_from_secret`" in auth[0].message


def test_several_errors_are_reported_at_once_in_line_order():
    issues = errors("""\
mode: enforced
network:
  egress:
    - host: "*.com"
      action: allow
    - host: "api.example.com"
      port: 70000
      action: permit
resources:
  memory: "lots"
""")
    fields = [i.field for i in issues]
    assert fields == [
        "mode",
        "network.egress[0].host",
        "network.egress[1].port",
        "network.egress[1].action",
        "resources.memory",
    ]
    assert [i.line for i in issues] == sorted(i.line for i in issues)
    assert "did you mean 'enforce'" in issues[0].message


@pytest.mark.parametrize(
    "host, fragment",
    [
        ("*", "every host"),
        ("**", "every host"),
        ("*.com", "public suffix"),
        ("**.com", "public suffix"),
        ("*.co.uk", "public suffix"),
        ("api.*.com", "whole first label"),
        ("a*.example.com", "whole first label"),
        ("*.127.0.0.1", "not IP addresses"),
        ("https://api.example.com/v1", "is a URL"),
        ("api.example.com:8443", "ports go in"),
        ("exa mple.com", "invalid host"),
        ("10.0.0.1/8", "neither a host name nor an IP network"),
    ],
)
def test_bad_hosts_are_rejected(host, fragment):
    (issue,) = errors(f'network:\n  egress:\n    - host: "{host}"\n      action: allow\n')
    assert issue.field == "network.egress[0].host"
    assert fragment in issue.message
    assert issue.line == 3 and issue.example


@pytest.mark.parametrize(
    "rule, field, fragment",
    [
        ("- host: a.example\n", "network.egress[0]", "no `action`"),
        ("- action: allow\n", "network.egress[0]", "needs a `host`"),
        ("- host: a.example\n  port: 1\n  ports: [2]\n  action: allow\n", "network.egress[0].ports", "both"),
        (
            "- host: a.example\n  paths: ['v1']\n  action: allow\n",
            "network.egress[0].paths[0]",
            "start with '/'",
        ),
        ("- host: a.example\n  paths: ['/v1?x=1']\n  action: allow\n", "network.egress[0].paths[0]", "query"),
        (
            "- host: a.example\n  paths: ['/v1/a**']\n  action: allow\n",
            "network.egress[0].paths[0]",
            "whole segment",
        ),
        (
            "- host: a.example\n  paths: ['/v1/%2f']\n  action: allow\n",
            "network.egress[0].paths[0]",
            "invalid path",
        ),
        ("- host: a.example\n  paths: []\n  action: allow\n", "network.egress[0].paths", "empty"),
        ("- host: a.example\n  methods: GET\n  action: allow\n", "network.egress[0].methods", "list"),
        ("- host: a.example\n  query: [a]\n  action: allow\n", "network.egress[0].query", "mapping"),
        ("- host: a.example\n  action: allow\n  extra: 1\n", "network.egress[0].extra", "unknown key"),
    ],
)
def test_bad_rules_are_rejected(rule, field, fragment):
    body = "".join("    " + line + "\n" for line in rule.splitlines())
    issues = errors("network:\n  egress:\n" + body)
    assert any(i.field == field and fragment in i.message for i in issues), issues


@pytest.mark.parametrize(
    "snippet, field",
    [
        ("inference:\n  routes:\n    - backend: {url: 'ftp://x'}\n", "inference.routes[0].backend.url"),
        (
            "inference:\n  routes:\n    - backend: {url: 'https://u:p@x.example'}\n",
            "inference.routes[0].backend.url",
        ),
        (
            "inference:\n  routes:\n    - caller_pattern: '('\n      backend: {url: 'https://x.example'}\n",
            "inference.routes[0].caller_pattern",
        ),
        (
            "inference:\n  routes:\n    - backend:\n        url: 'https://x.example'\n"
            "        auth: {type: header, token_from_secret: k}\n",
            "inference.routes[0].backend.auth",
        ),
        (
            "inference:\n  routes:\n    - backend:\n        url: 'https://x.example'\n"
            "        auth: {type: query, token_from_secret: k}\n",
            "inference.routes[0].backend.auth",
        ),
        (
            "inference:\n  routes:\n    - backend:\n        url: 'https://x.example'\n"
            "        auth: {type: bearer, token_from_secret: '../../etc/passwd'}\n",
            "inference.routes[0].backend.auth.token_from_secret",
        ),
        (
            "inference:\n  routes:\n    - backend:\n        url: 'https://x.example'\n"
            "        auth: {type: basic, token_from_secret: k}\n",
            "inference.routes[0].backend.auth.type",
        ),
        ("inference:\n  routes:\n    - caller_pattern: x\n", "inference.routes[0]"),
        ("filesystem:\n  read_only: ['usr']\n", "filesystem.read_only[0]"),
        ("filesystem:\n  hidden: ['/a/../etc']\n", "filesystem.hidden[0]"),
        ("process:\n  user: 'Bad User'\n", "process.user"),
        ("resources:\n  memory: '2m'\n", "resources.memory"),
        ("resources:\n  cpu: 0\n", "resources.cpu"),
        ("resources:\n  pids: 0\n", "resources.pids"),
        ("resources:\n  timeout: 'soon'\n", "resources.timeout"),
        ("resources:\n  disk: true\n", "resources.disk"),
        ("gpu: 'yes'\n", "gpu"),
        ("mode: audit\nnetwork:\n  mode: enforce\n", "network.mode"),
    ],
)
def test_bad_sections_are_rejected(snippet, field):
    issues = errors(snippet)
    assert any(i.field == field for i in issues), [str(i) for i in issues]
    assert all(i.line > 0 and i.expected for i in issues)


def test_yaml_syntax_and_duplicate_keys_report_position():
    (issue,) = errors("network:\n  egress: [\n    - a\n")
    assert issue.line > 0 and "not valid YAML" in issue.message
    (dup,) = errors("mode: audit\nmode: enforce\n")
    assert dup.line == 2 and "duplicate" in dup.message


def test_shadowed_and_unreachable_rules_are_warnings():
    p = parse_policy(
        """\
network:
  egress:
    - host: "*.example.com"
      action: allow
    - host: "api.example.com"
      ports: [80, 443]
      paths: ["/v1/**"]
      action: deny
    - host: "api.other.com"
      paths:
        - path: "/v1/**"
      action: allow
    - host: "api.other.com"
      paths:
        - path: "/v1/users/*"
          methods: ["GET"]
      action: allow
    - host: "api.third.com"
      paths: ["/v1/users/*"]
      action: allow
    - host: "api.third.com"
      paths: ["/v1/**"]
      action: allow
    - action: deny
    - host: "late.example.org"
      action: allow
""",
        source="w.yaml",
    )
    warned = {w.field: w for w in p.warnings}
    assert set(warned) == {"network.egress[1]", "network.egress[3]", "network.egress[7]"}
    assert "unreachable" in warned["network.egress[1]"].message
    assert "network.egress[0]" in warned["network.egress[1]"].message
    assert warned["network.egress[1]"].line == 5 and warned["network.egress[1]"].severity == "warning"
    assert "redundant" in warned["network.egress[3]"].message
    assert "unreachable" in warned["network.egress[7]"].message  # after the catch-all deny


def test_other_warnings():
    p = parse_policy(
        "mode: audit\nprocess: {user: root}\nnetwork:\n  egress:\n    - host: a.example\n"
        "      methods: [PROPFIND]\n      action: allow\n"
    )
    fields = {w.field for w in p.warnings}
    assert {"mode", "process.user", "network.egress[0].methods[0]"} <= fields


def test_load_policy_file(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(SEED)
    assert load_policy_file(f).source == str(f)
    f.write_text(SEED.replace("action: allow", "action: alow"))
    with pytest.raises(PolicyError) as info:
        load_policy_file(f)
    assert info.value.issues[0].file == str(f)
    assert str(f) + ":9:" in str(info.value)
