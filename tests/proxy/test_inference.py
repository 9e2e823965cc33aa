"""Inference routes through the real proxy with the real `openai` client, requests and curl against a
fake OpenAI-compatible server: caller credentials stripped, exactly one backend key injected, the key
never returned to the caller, never in the flow log or proxy stderr, never sent on a redirect."""

from __future__ import annotations

import json
import ssl

import httpx
import openai
import pytest
import requests

from .conftest import curl

REAL_KEY = "sk-real-backend-key-0123456789abcdef"
CALLER_KEY = "sk-caller-fake-key"
POLICY = """\
network:
  egress:
    - host: "127.0.0.1"
      ports: [{other_port}]
      action: allow
    - action: deny
inference:
  routes:
    - caller_pattern: ".*"
      backend:
        url: "https://llm.test:{port}/v1"
        addresses: ["127.0.0.1"]  # the fake backend lives on loopback, refused unless named
        auth:
          type: bearer
          token_from_secret: "openai-api-key"
      strip_caller_auth: true
"""


def _write_secret(proxy_state, value: str, mode: int = 0o600) -> None:
    path = proxy_state / "secrets" / "openai-api-key"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_text(value + "\n")
    path.chmod(mode)


@pytest.fixture
def routed(make_proxy, tmp_path, fake_openai, other_upstream):
    fake_openai.clear()
    other_upstream.clear()
    state = tmp_path / "inference-state"
    state.mkdir(mode=0o700)
    _write_secret(state, REAL_KEY)
    return make_proxy(POLICY.format(port=fake_openai.port, other_port=other_upstream.port),
                      resolve={"llm.test": "127.0.0.1"}, state=state)


def _leaks(proxy) -> list[str]:
    where = []
    if REAL_KEY in proxy.stderr():
        where.append("proxy stderr")
    if REAL_KEY in (proxy.state_dir / "flows" / "flows.jsonl").read_text():
        where.append("flow log")
    return where


def test_openai_client_gets_injected_key(routed, fake_openai):
    http_client = httpx.Client(proxy=routed.url, trust_env=False)
    client = openai.OpenAI(base_url="http://inference.local/v1", api_key=CALLER_KEY, http_client=http_client,
                           default_headers={"x-api-key": "caller-x", "Cookie": "session=caller",
                                            "x-goog-api-key": "g", "api-key": "a"})
    out = client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
    assert out.choices[0].message.content == "echo: hi"
    assert [m.id for m in client.models.list()] == ["fake-model"]
    first = next(r for r in fake_openai.requests if r.path == "/v1/chat/completions")
    auths = [v for k, v in first.headers if k.lower() == "authorization"]
    assert auths == [f"Bearer {REAL_KEY}"]  # exactly one credential: the backend's
    values = " ".join(first.header_values())
    for leaked in (CALLER_KEY, "caller-x", "session=caller"):
        assert leaked not in values
    names = {k.lower() for k, _ in first.headers}
    assert not names & {"x-api-key", "cookie", "x-goog-api-key", "api-key", "proxy-authorization"}
    assert first.header("Host") == f"llm.test:{fake_openai.port}"  # destination from the route
    chat = next(f for f in routed.client.flows() if f["path"] == "/v1/chat/completions")
    assert chat["route"]["backend"].startswith("https://llm.test")
    assert chat["host"] == "inference.local" and chat["decision"] == "allow"
    assert _leaks(routed) == []


def test_https_virtual_host_and_query_credentials(routed, fake_openai):
    code, body = curl(routed, "https://inference.local/v1/models?key=caller-q&api_key=x&limit=5",
                      "-H", f"Authorization: Bearer {CALLER_KEY}")
    assert code == 200, body
    rec = fake_openai.requests[-1]
    assert rec.path == "/v1/models?limit=5"
    assert rec.header("Authorization") == f"Bearer {REAL_KEY}"


def test_key_is_scrubbed_from_responses(routed, fake_openai):
    s = requests.Session()
    s.trust_env = False
    r = s.get("http://inference.local/v1/echo-auth", proxies={"http": routed.url})
    assert r.status_code == 200
    assert fake_openai.requests[-1].header("Authorization") == f"Bearer {REAL_KEY}"  # it did see the key
    assert REAL_KEY not in r.text
    assert REAL_KEY not in json.dumps(dict(r.headers))
    assert "[REDACTED]" in r.headers["X-Echo-Auth"]
    assert _leaks(routed) == []


def test_redirect_to_other_origin_gets_no_key(routed, fake_openai, other_upstream):
    s = requests.Session()
    s.trust_env = False
    r = s.get("http://inference.local/v1/redirect-out", proxies={"http": routed.url})
    assert r.status_code == 200  # the caller followed the redirect itself, as a new request
    assert [q.path for q in other_upstream.requests] == ["/stolen"]
    for rec in other_upstream.requests:
        assert REAL_KEY not in " ".join(rec.header_values())
    assert _leaks(routed) == []


def test_group_readable_secret_is_refused(make_proxy, tmp_path, fake_openai):
    fake_openai.clear()
    state = tmp_path / "insecure-state"
    state.mkdir(mode=0o700)
    _write_secret(state, REAL_KEY, 0o644)
    proxy = make_proxy(POLICY.format(port=fake_openai.port, other_port=1), resolve={"llm.test": "127.0.0.1"},
                       state=state)
    code, body = curl(proxy, "http://inference.local/v1/models")
    assert code == 502
    assert "chmod 600" in json.loads(body)["error"] and REAL_KEY not in body
    assert fake_openai.requests == []


def test_secret_from_proxy_environment(make_proxy, fake_openai):
    fake_openai.clear()
    proxy = make_proxy(POLICY.format(port=fake_openai.port, other_port=1), resolve={"llm.test": "127.0.0.1"},
                       env={"OPENSHELL_SECRET_OPENAI_API_KEY": "sk-from-env"})
    ctx = ssl.create_default_context(cafile=str(proxy.ca_bundle))
    with httpx.Client(proxy=proxy.url, verify=ctx, trust_env=False) as c:
        r = c.get("https://inference.local/v1/models", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 200
    assert fake_openai.requests[-1].header("Authorization") == "Bearer sk-from-env"
    assert "sk-from-env" not in proxy.stderr()


QUERY_POLICY = """\
inference:
  routes:
    - caller_pattern: "^host$"
      match:
        hosts: ["inference.local"]
      backend:
        url: "https://llm.test:{port}/v1beta"
        addresses: ["127.0.0.1"]
        auth:
          type: query
          param: "key"
          token_from_secret: "gemini-key"
"""


def test_query_credential_injected_and_never_logged(make_proxy, fake_openai):
    fake_openai.clear()
    proxy = make_proxy(QUERY_POLICY.format(port=fake_openai.port), resolve={"llm.test": "127.0.0.1"},
                       env={"OPENSHELL_SECRET_GEMINI_KEY": REAL_KEY})
    code, body = curl(proxy, "http://inference.local/models?key=caller&pageSize=2",
                      "-H", "x-goog-api-key: caller-goog")
    assert code == 200  # the echo server answers JSON for any path
    rec = fake_openai.requests[-1]
    assert rec.path == f"/v1beta/models?pageSize=2&key={REAL_KEY}"
    assert rec.header("x-goog-api-key") is None
    assert REAL_KEY not in body  # the echo of the path is scrubbed
    assert _leaks(proxy) == []
