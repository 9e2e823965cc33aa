"""Attack tests for what a routed request carries to the backend: one forwarding allowlist on every
route (`strip_caller_auth` true or false), so no caller credential reaches the backend whatever the
header's spelling (case, `_` for `-`, prefixes), and no query parameter whose name looks like a
credential. Exactly one credential arrives: the route's. Control: the same request sent on a plain
allow rule to the same backend arrives with every one of those headers and parameters."""

from __future__ import annotations

import pytest
import requests

from jupyter_openshell.proxy.addons.inference import FORWARD_HEADERS, credential_param
from jupyter_openshell.testing import start_proxy

from .leaky_backend import LeakyBackend

KEY = "sk-route-key-0123456789abcdef"
ROUTE = """\
    - caller_pattern: ".*"
      match: {{hosts: ["{name}.local"]}}
      backend:
        url: "http://llm.test:{port}/v1"
        addresses: ["127.0.0.1"]  # the backend lives on loopback, refused unless named{auth}
      strip_caller_auth: {strip}
"""
AUTHS = {
    "bearer": '\n        auth: {type: bearer, token_from_secret: "llm-key"}',
    "header": '\n        auth: {type: header, header: "api-key", token_from_secret: "llm-key"}',
    "query": '\n        auth: {type: query, param: "key", token_from_secret: "llm-key"}',
    "none": "",
}
CALLER_HEADERS = [
    ("Authorization", "Bearer caller-authz"), ("authorization", "Basic Y2FsbGVyOnB3"),
    ("x_api_key", "caller-1"), ("X_API_KEY", "caller-2"), ("api_key", "caller-3"), ("Api-Key", "caller-4"),
    ("x-api-key", "caller-5"), ("X-Api-Key", "caller-5b"), ("apikey", "caller-6"),
    ("Ocp-Apim-Subscription-Key", "caller-7"), ("x-goog-api-key", "caller-8"),
    ("X_Goog_Api_Key", "caller-8b"),
    ("Cookie", "session=caller-10"), ("Cookie2", "caller-11"),
    ("X-Auth-Token", "caller-12"), ("X-Amz-Security-Token", "caller-13"), ("x-access-token", "caller-14"),
    ("X-Custom-Secret", "caller-15"), ("Authentication", "caller-16"), ("X-ApiKey", "caller-17"),
    ("X-Functions-Key", "caller-18"), ("Private-Token", "caller-19"),
    ("x-ms-token-aad-id-token", "caller-20"),
    ("X-Upstream-Credential", "caller-21"), ("Forwarded", "for=caller-22"), ("X-Forwarded-For", "caller-23"),
    ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", "caller-24"),
    ("Range", "bytes=10-20"),
]
CALLER_PARAMS = [
    ("key", "caller-q1"), ("KEY", "caller-q2"), ("api_key", "caller-q3"), ("Api-Key", "caller-q4"),
    ("apiKey", "caller-q5"), ("x-api-key", "caller-q6"), ("access_token", "caller-q7"),
    ("accessToken", "caller-q8"), ("token", "caller-q9"), ("id_token", "caller-q10"),
    ("client_secret", "caller-q11"), ("password", "caller-q12"), ("sig", "caller-q13"),
    ("signature", "caller-q14"), ("code", "caller-q15"), ("subscription-key", "caller-q16"),
    ("X-Amz-Signature", "caller-q17"), ("X-Amz-Credential", "caller-q18"), ("auth", "caller-q19"),
    ("key[]", "caller-q20"), ("api_key2", "caller-q21"), ("%6Bey", "caller-q22"), ("se%73sion", "caller-q23"),
]
KEPT_PARAMS = [("limit", "5"), ("api-version", "2024-06-01"), ("pageToken", "p2"), ("alt", "sse")]


@pytest.fixture(scope="module")
def leaky():
    with LeakyBackend() as srv:
        yield srv


@pytest.fixture(scope="module")
def proxy(leaky, tmp_path_factory):
    state = tmp_path_factory.mktemp("fwd-state")
    state.chmod(0o700)
    routes = "".join(ROUTE.format(name=f"{auth}-{str(strip).lower()}", port=leaky.port, auth=AUTHS[auth],
                                  strip=str(strip).lower())
                     for auth in AUTHS for strip in (True, False))
    policy = state / "policy.yaml"
    policy.write_text(f'network:\n  egress:\n    - host: "127.0.0.1"\n      ports: [{leaky.port}]\n'
                      f"      action: allow\ninference:\n  routes:\n{routes}")
    run = start_proxy(state, policy, resolve={"llm.test": "127.0.0.1"}, env={"OPENSHELL_SECRET_LLM_KEY": KEY})
    yield run
    run.stop()


def _send(proxy, leaky, host: str) -> dict:
    query = "&".join(f"{k}={v}" for k, v in CALLER_PARAMS + KEPT_PARAMS)
    before = len(leaky.seen)
    s = requests.Session()
    s.trust_env = False
    req = requests.Request("GET", f"http://{host}/v1/chat?{query}").prepare()
    req.headers.clear()
    for k, v in CALLER_HEADERS:  # as sent: duplicates and every spelling, in order
        req.headers[k] = v if k not in req.headers else req.headers[k] + ", " + v
    s.send(req, proxies={"http": proxy.url}, timeout=10)
    return leaky.seen[before]


@pytest.mark.parametrize("strip", [True, False])
@pytest.mark.parametrize("auth", list(AUTHS))
def test_no_caller_credential_reaches_the_backend(proxy, leaky, auth, strip):
    seen = _send(proxy, leaky, f"{auth}-{str(strip).lower()}.local")
    names = {k.lower() for k, _ in seen["pairs"]}
    values = " ".join(v for _, v in seen["pairs"]) + " " + seen["target"]
    allowed = FORWARD_HEADERS | {"host", "accept-encoding"}
    if auth == "bearer" or (auth == "none" and not strip):
        allowed |= {"authorization"}
    if auth == "header":
        allowed |= {"api-key"}
    assert names <= allowed, names - allowed
    leaked = [v for _, v in CALLER_HEADERS + CALLER_PARAMS if v.startswith("caller") and v in values]
    if auth == "none" and not strip:  # the caller's own credential in the route's slot, nothing else
        assert seen["headers"]["authorization"] == "Bearer caller-authz, Basic Y2FsbGVyOnB3"
        leaked = [v for v in leaked if v != "caller-authz"]
    assert leaked == []
    assert seen["headers"].get("upgrade") is None and seen["headers"].get("range") is None
    for k, v in KEPT_PARAMS:
        assert f"{k}={v}" in seen["target"]
    injected = {"bearer": f"Bearer {KEY}", "header": KEY}.get(auth)
    if injected:
        slot = "authorization" if auth == "bearer" else "api-key"
        assert [v for k, v in seen["pairs"] if k.lower() == slot] == [injected]  # exactly one credential
    if auth == "query":
        assert seen["target"].count("key=") == 1 and seen["target"].endswith(f"&key={KEY}")
    if auth == "none":
        assert KEY not in values


def test_control_the_same_request_without_a_route_carries_everything(proxy, leaky):
    seen = _send(proxy, leaky, f"127.0.0.1:{leaky.port}")
    values = " ".join(v for _, v in seen["pairs"]) + " " + seen["target"]
    assert [v for _, v in CALLER_HEADERS + CALLER_PARAMS if v.startswith("caller") and v not in values] == []


@pytest.mark.parametrize("name", ["key", "KEY", "x_api_key", "X-API-KEY", "apiKey", "api_key2",
                                  "access.token", "refresh_token", "ClientSecret", "passwd", "sig",
                                  "X-Amz-Signature", "sessionid", "Auth", "jwt", "code"])
def test_credential_param_names(name):
    assert credential_param(name)


@pytest.mark.parametrize("name", ["limit", "api-version", "pageToken", "next_token", "alt", "model",
                                  "max_tokens", "order", "after"])
def test_non_credential_param_names(name):
    assert not credential_param(name)
