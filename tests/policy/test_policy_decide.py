"""Decisions: the seed policy, host/port/path/method/query matching, first match wins, default deny,
attacks through normalisation, method overrides, `;params`, audit mode, hints, inference routes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_seed import SEED

from jupyter_openshell.policy import Decision, RequestInfo, parse_policy

pytestmark = pytest.mark.usefixtures("yaml_loader")


def decide(policy_text: str, method: str, url: str, headers=()) -> Decision:
    return parse_policy(policy_text).compile().decide(RequestInfo.from_url(method, url, headers))


@pytest.fixture(scope="module")
def seed():
    return parse_policy(SEED).compile()


def _d(compiled, method, url, headers=()):
    return compiled.decide(RequestInfo.from_url(method, url, headers))


def test_seed_policy(seed):
    get = _d(seed, "GET", "https://api.example.com/v1/users/1")
    assert (get.action, get.allowed, get.rule_index, get.status) == ("allow", True, 0, None)
    assert get.policy_version == parse_policy(SEED).version
    post = _d(seed, "POST", "https://api.example.com/v1/users/1")
    assert (post.action, post.allowed, post.rule_index, post.status) == ("deny", False, 1, 403)
    head = _d(seed, "HEAD", "https://api.example.com/v1/data")
    assert head.allowed and head.rule_index == 0
    other = _d(seed, "GET", "https://other.example.com/v1/users/1")
    assert not other.allowed and other.status == 403
    assert not _d(seed, "HEAD", "https://api.example.com/v1/users/1").allowed  # HEAD is not implied by GET
    assert not _d(seed, "GET", "https://api.example.com/v1/users/1/posts").allowed  # * stays in one segment
    assert not _d(seed, "GET", "https://api.example.com/v1/users/").allowed  # * is one non-empty segment
    assert not _d(seed, "GET", "https://api.example.com:8443/v1/users/1").allowed  # ports default 80/443
    assert _d(seed, "GET", "http://api.example.com/v1/users/1").allowed


def test_unmatched_requests_are_denied_even_without_a_final_deny():
    text = 'network:\n  egress:\n    - host: "a.example.com"\n      action: allow\n'
    d = decide(text, "GET", "https://b.example.com/")
    assert not d.allowed and d.rule_index is None and d.rule == "no rule matched (default deny)"
    assert decide("", "GET", "https://a.example.com/").status == 403


def test_first_match_wins():
    text = """
network:
  egress:
    - host: api.example.com
      paths: ["/v1/admin/**"]
      action: deny
    - host: api.example.com
      action: allow
"""
    assert not decide(text, "GET", "https://api.example.com/v1/admin/users").allowed
    assert not decide(text, "GET", "https://api.example.com/v1/admin").allowed
    assert decide(text, "GET", "https://api.example.com/v1/public").allowed


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com/v1/public/../admin/x",
        "https://api.example.com/v1/public/%2e%2e/admin/x",
        "https://api.example.com/v1//admin/x",
        "https://api.example.com/v1/./admin/x",
        "https://api.example.com/v1/%61dmin/x",
        "https://API.EXAMPLE.COM./v1/admin/x",
        "https://api.example.com/v1/admin;x=1/x",  # Tomcat routes this to /v1/admin/x
    ],
)
def test_path_tricks_cannot_bypass_a_deny_rule(url):
    text = """
network:
  egress:
    - host: api.example.com
      paths: ["/v1/admin/**"]
      action: deny
    - host: api.example.com
      paths: ["/v1/**"]
      action: allow
"""
    d = decide(text, "GET", url)
    assert not d.allowed, d
    assert d.status == 403


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com/v1/users%2f..%2fadmin",
        "https://api.example.com/v1/users/..;/admin",
        "https://api.example.com/v1/%00",
        "https://api.example.com/v1/%c0%ae%c0%ae/admin",
        "https://api.example.com/v1/%zz",
        "https://api.example.com/v1\\admin",
        "https://exa%6dple.com/",
    ],
)
def test_ambiguous_requests_get_400_even_in_audit_mode(url):
    for mode in ("enforce", "audit"):
        d = decide(
            f"mode: {mode}\n" + 'network:\n  egress:\n    - host: "api.example.com"\n      action: allow\n',
            "GET",
            url,
        )
        assert (d.status, d.allowed, d.action) == (400, False, "deny"), d
        assert d.reason.startswith("bad request")


def test_lowercase_or_weird_methods_are_400():
    text = 'network:\n  egress:\n    - host: "api.example.com"\n      action: allow\n'
    assert decide(text, "get", "https://api.example.com/").status == 400
    assert decide(text, "GE T", "https://api.example.com/").status == 400
    assert decide(text, "GET", "https://api.example.com/").allowed


def test_ip_literals_are_never_matched_as_names():
    text = """
network:
  egress:
    - host: "127.0.0.1"
      port: 8080
      action: allow
    - host: "*.example.com"
      action: allow
"""
    for host in ("127.0.0.1", "2130706433", "0x7f.1", "0177.0.0.1", "127.1", "[::ffff:127.0.0.1]"):
        assert decide(text, "GET", f"http://{host}:8080/").allowed, host
    assert not decide(text, "GET", "http://127.0.0.2:8080/").allowed
    assert not decide(text, "GET", "http://127.0.0.1:8081/").allowed


def test_wildcard_hosts():
    text = """
network:
  egress:
    - host: "*.example.com"
      action: allow
    - host: "**.deep.org"
      action: allow
"""
    assert decide(text, "GET", "https://a.example.com/").allowed
    assert not decide(text, "GET", "https://example.com/").allowed
    assert not decide(text, "GET", "https://a.b.example.com/").allowed  # one label only
    assert not decide(text, "GET", "https://a.example.com.evil.net/").allowed
    assert not decide(text, "GET", "https://aexample.com/").allowed
    assert decide(text, "GET", "https://x.deep.org/").allowed
    assert decide(text, "GET", "https://x.y.deep.org/").allowed
    assert not decide(text, "GET", "https://deep.org/").allowed


def test_cidr_hosts_and_ports():
    text = """
network:
  egress:
    - host: "10.1.0.0/16"
      ports: [8000, 9000]
      action: allow
"""
    assert decide(text, "GET", "http://10.1.2.3:8000/").allowed
    assert decide(text, "GET", "http://167838211:9000/").allowed  # 10.1.2.3 spelled as a number
    assert not decide(text, "GET", "http://10.2.0.1:8000/").allowed
    assert not decide(text, "GET", "http://10.1.2.3/").allowed


def test_globs():
    text = """
network:
  egress:
    - host: h.example
      paths:
        - "/files/**"
        - "/v*/models/*.json"
        - "/a/**/z"
      action: allow
"""
    ok = ["/files", "/files/", "/files/a/b/c", "/v2/models/m.json", "/a/z", "/a/b/c/z"]
    bad = ["/filesx", "/v2/models/m.yaml", "/v2/models/x/m.json", "/a/b/y", "/other"]
    for p in ok:
        assert decide(text, "GET", f"https://h.example{p}").allowed, p
    for p in bad:
        assert not decide(text, "GET", f"https://h.example{p}").allowed, p


def test_rule_level_methods_and_query_matchers():
    text = """
network:
  egress:
    - host: h.example
      methods: ["GET"]
      paths:
        - path: "/search"
          query: {"api-version": "2024-*", "q": "*"}
      action: allow
"""
    assert decide(text, "GET", "https://h.example/search?api-version=2024-01&q=x").allowed
    assert not decide(text, "GET", "https://h.example/search?api-version=2023-01&q=x").allowed
    assert not decide(text, "GET", "https://h.example/search?q=x").allowed  # required parameter missing
    assert not decide(text, "POST", "https://h.example/search?api-version=2024-01&q=x").allowed
    # parameter pollution: every occurrence must match, under either separator convention
    assert not decide(
        text, "GET", "https://h.example/search?api-version=2024-01&q=x&api-version=2023"
    ).allowed
    assert not decide(
        text, "GET", "https://h.example/search?api-version=2024-01&q=x;api-version=2023"
    ).allowed
    assert decide(text, "GET", "https://h.example/search?api-version=2024%2D01&q=x").allowed
    assert decide(text, "GET", "https://h.example/search?api-version=2024-01&q=%zz").status == 400


def test_method_override_must_be_allowed_too(seed):
    url = "https://api.example.com/v1/users/1"
    for headers in (
        {"X-HTTP-Method-Override": "DELETE"},
        {"x-http-method": "POST"},
        [("X-Method-Override", "put")],
    ):
        d = _d(seed, "GET", url, headers)
        assert not d.allowed and d.status == 403 and "override" in d.reason, headers
    assert not _d(seed, "GET", url + "?_method=DELETE").allowed
    assert not _d(seed, "GET", url + "?%5Fmethod=DELETE").allowed
    assert _d(seed, "GET", url, {"X-HTTP-Method-Override": "GET"}).allowed
    assert _d(seed, "GET", "https://api.example.com/v1/data", {"X-HTTP-Method-Override": "HEAD"}).allowed
    assert _d(seed, "GET", url, {"X-HTTP-Method-Override": "DEL ETE"}).status == 400


def test_params_in_path_need_both_forms_allowed():
    text = """
network:
  egress:
    - host: h.example
      paths: ["/api/*;v=1"]
      action: allow
"""
    # the literal path matches, but its ;-stripped form (/api/x) does not
    assert not decide(text, "GET", "https://h.example/api/x;v=1").allowed
    assert decide(
        "network:\n  egress:\n    - host: h.example\n      paths: ['/api/*']\n      action: allow\n",
        "GET",
        "https://h.example/api/x;v=1",
    ).allowed


def test_audit_mode_lets_through_and_marks_it():
    text = "mode: audit\n" + SEED
    d = decide(text, "POST", "https://api.example.com/v1/users/1")
    assert (d.action, d.allowed, d.audit, d.status) == ("audit-allow", True, True, None)
    assert d.hint
    ok = decide(text, "GET", "https://api.example.com/v1/users/1")
    assert (ok.action, ok.audit) == ("allow", False)
    nested = SEED.replace("network:\n", "network:\n  mode: audit\n", 1)
    assert decide(nested, "POST", "https://api.example.com/v1/users/1").action == "audit-allow"


def test_denial_carries_normalised_request_rule_and_a_hint_that_allows_it(seed):
    d = _d(seed, "POST", "https://API.example.com./v1/users/%31")
    assert (d.method, d.host, d.port, d.path) == ("POST", "api.example.com", 443, "/v1/users/1")
    assert d.rule.startswith("network.egress[1]")
    assert d.hint and "api.example.com" in d.hint
    fixed = SEED.replace(
        "    - action: deny\n", d.hint.replace("\n", "\n    ").join(["    ", "\n"]) + "    - action: deny\n"
    )
    assert decide(fixed, "POST", "https://api.example.com/v1/users/1").allowed


def test_decision_to_dict(seed):
    out = _d(seed, "GET", "https://api.example.com/v1/users/1").to_dict()
    assert out["action"] == "allow" and out["policy_version"] and out["path"] == "/v1/users/1"


def test_inference_routes():
    text = """
inference:
  routes:
    - name: openai
      caller_pattern: "agent-.*"
      backend:
        url: "https://api.openai.com/v1"
        auth: {type: bearer, token_from_secret: "openai-api-key"}
    - caller_pattern: ".*"
      match:
        hosts: ["inference.local"]
        paths: ["/anthropic/**"]
      backend:
        url: "http://127.0.0.1:9000"
        auth: {type: header, header: "x-api-key", token_from_secret: "anthropic"}
"""
    c = parse_policy(text).compile()
    r = c.route_inference("agent-1", "inference.local", "/v1/chat/completions")
    assert r is not None and r.index == 0 and r.backend.auth.token_from_secret == "openai-api-key"
    assert r.target_path("/v1/chat/completions") == "/v1/chat/completions"
    assert r.target_path("/chat/completions") == "/v1/chat/completions"
    assert c.route_inference("agent-1", "API.OPENAI.COM.", "/v1/models").index == 0
    assert c.route_inference("notebook", "inference.local", "/v1/models") is None  # caller does not match
    r2 = c.route_inference("notebook", "inference.local", "/anthropic/v1/messages")
    assert r2.index == 1 and r2.backend.port == 9000 and r2.backend.auth.header == "x-api-key"
    assert c.route_inference("agent-1", "evil.example", "/v1/models") is None
    assert c.route_inference("agent-1", "inference.local", "/v1/%2f") is None  # malformed never routes


def test_fast_paths_do_not_change_results_with_many_rules():
    rules = "".join(
        f'    - host: "h{i}.example.com"\n'
        f'      paths: ["/api/v{i % 7}/*", "/static/**"]\n      action: allow\n'
        for i in range(300)
    )
    rules += '    - host: "h5.example.com"\n      paths: ["/late/*"]\n      action: allow\n'
    rules += '    - host: "*.example.com"\n      paths: ["/shared/**"]\n      action: allow\n'
    c = parse_policy("network:\n  egress:\n" + rules).compile()
    assert c.decide(RequestInfo.from_url("GET", "https://h5.example.com/api/v5/x")).rule_index == 5
    assert c.decide(RequestInfo.from_url("GET", "https://h5.example.com/late/x")).rule_index == 300
    assert c.decide(RequestInfo.from_url("GET", "https://h5.example.com/shared/a/b")).rule_index == 301
    assert c.decide(RequestInfo.from_url("GET", "https://zz.example.com/shared/a")).rule_index == 301
    assert not c.decide(RequestInfo.from_url("GET", "https://h5.example.com/api/v4/x")).allowed


def test_host_with_port_is_split_and_must_agree():
    c = parse_policy(
        'network:\n  egress:\n    - host: "h.example"\n      port: 8443\n      action: allow\n'
    ).compile()
    assert c.decide(RequestInfo("GET", "https", "h.example:8443", None, "/")).allowed
    assert c.decide(RequestInfo("GET", "https", "h.example:8443", 8443, "/")).allowed
    assert c.decide(RequestInfo("GET", "https", "h.example:8443", 443, "/")).status == 400
    assert c.decide(RequestInfo("GET", "https", "[::1]", 8443, "/")).status == 403


def test_host_may_be_allowed_and_the_addresses_a_decision_admits():
    text = """
network:
  egress:
    - host: "api.example.com"
      paths: ["/v1/**"]
      action: allow
    - host: "blocked.example.com"
      action: deny
    - host: "127.0.0.1"
      port: 9000
      action: allow
    - host: "10.0.0.0/8"
      action: allow
    - host: "169.254.169.254"
      action: deny
"""
    c = parse_policy(text).compile()
    assert c.host_may_be_allowed("API.example.com", 443)
    assert not c.host_may_be_allowed("api.example.com", 8443)
    assert not c.host_may_be_allowed("blocked.example.com", 443)
    assert not c.host_may_be_allowed("other.example.com", 443)
    assert not c.host_may_be_allowed("bad host", 443)
    loop = c.decide(RequestInfo("GET", "http", "2130706433", 9000, "/x"))  # the rule naming 127.0.0.1
    assert loop.allowed and loop.admits("127.0.0.1") and loop.admits("::ffff:127.0.0.1")
    assert not loop.admits("127.0.0.2") and not loop.admits("api.example.com")
    net = c.decide(RequestInfo("GET", "https", "10.1.2.3", 443, "/"))
    assert net.admits("10.9.9.9") and not net.admits("127.0.0.1")
    named = c.decide(RequestInfo("GET", "https", "api.example.com", 443, "/v1/x"))
    assert named.allowed and not named.admits("127.0.0.1") and not named.admits("10.1.2.3")
    meta = c.decide(RequestInfo("GET", "https", "169.254.169.254", 443, "/"))
    assert not meta.allowed and not meta.admits("169.254.169.254")  # named, but only by a deny rule
    audit = parse_policy("mode: audit\n" + text).compile()
    assert audit.host_may_be_allowed("other.example.com", 443)
    audit = parse_policy(
        'mode: audit\nnetwork:\n  egress:\n    - host: "127.0.0.1"\n      port: 9000\n      paths: ["/ok"]\n'
        "      action: allow\n"
    ).compile()
    would = audit.decide(RequestInfo("POST", "http", "127.0.0.1", 9000, "/x"))  # audit-allowed
    assert would.action == "audit-allow" and would.admits("127.0.0.1")  # the rule one would widen
    assert not audit.decide(RequestInfo("GET", "http", "127.0.0.1", 9001, "/")).admits("127.0.0.1")
    assert not audit.decide(RequestInfo("GET", "https", "x.example.com", 443, "/")).admits("127.0.0.1")


_DENY_ADMIN = parse_policy(
    """
network:
  egress:
    - host: api.example.com
      paths: ["/v1/admin/**"]
      action: deny
    - host: api.example.com
      paths: ["/v1/**"]
      action: allow
"""
).compile()


@st.composite
def disguised_admin_paths(draw):
    """`/v1/admin/<x>` disguised: encoded characters (any hex case), dot segments, repeated
    slashes, `;params`, and detours through other directories that `..` undoes."""
    out = []
    for seg in ["v1", "admin", draw(st.sampled_from(["users", "x", "a.b"]))]:
        if draw(st.booleans()):
            out.append(draw(st.sampled_from([".", "", "%2e", "%2E"])))
        if draw(st.booleans()):
            out += [
                draw(st.sampled_from(["public", "v1", "zz"])),
                draw(st.sampled_from(["..", "%2e%2e", ".%2E"])),
            ]
        chars = []
        for c in seg:
            if draw(st.booleans()):
                esc = f"%{ord(c):02x}"
                chars.append(esc.upper() if draw(st.booleans()) else esc)
            else:
                chars.append(c)
        text = "".join(chars)
        if draw(st.booleans()):
            text += draw(st.sampled_from([";", ";x=1", ";jsessionid=abc"]))
        out.append(text)
    sep = draw(st.sampled_from(["/", "//", "///"]))
    return "/" + sep.join(out)


@settings(max_examples=400, deadline=None)
@given(disguised_admin_paths(), st.sampled_from(["api.example.com", "API.Example.com", "api.example.com."]))
def test_no_disguise_of_a_denied_path_is_allowed(path, host):
    d = _DENY_ADMIN.decide(RequestInfo("GET", "https", host, 443, path))
    assert not d.allowed, (path, d)
    assert d.status in (400, 403)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="/abv1.%2eEfF;=x", max_size=25))
def test_decision_on_a_path_equals_the_decision_on_its_normal_form(raw):
    path = "/" + raw
    d = _DENY_ADMIN.decide(RequestInfo("GET", "https", "api.example.com", 443, path))
    if d.status == 400:
        return
    again = _DENY_ADMIN.decide(RequestInfo("GET", "https", "api.example.com", 443, d.path))
    assert (again.action, again.rule_index, again.path) == (d.action, d.rule_index, d.path)
