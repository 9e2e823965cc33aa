"""The backend key must not reach the caller in any spelling the proxy itself produced: a query
credential is sent percent-encoded, and a backend that echoes its request URL (error pages often do)
hands that spelling back. Real proxy, real curl, the fake OpenAI server on loopback."""

from __future__ import annotations

from urllib.parse import quote

from .conftest import curl
from .test_inference import QUERY_POLICY

# base64-style keys (AWS-style secrets, some vendors' API keys) hold '/', '+' and '='
KEY = "AIzaSy/real+backend=key/0123456789abcdef"


def test_percent_encoded_query_credential_is_scrubbed(make_proxy, fake_openai):
    fake_openai.clear()
    proxy = make_proxy(QUERY_POLICY.format(port=fake_openai.port), resolve={"llm.test": "127.0.0.1"},
                       env={"OPENSHELL_SECRET_GEMINI_KEY": KEY})
    code, body = curl(proxy, "http://inference.local/models?pageSize=2")
    assert code == 200
    assert fake_openai.requests[-1].path.endswith("key=" + quote(KEY, safe=""))  # what the backend saw
    for spelling in (KEY, quote(KEY, safe=""), quote(KEY, safe="").lower()):
        assert spelling not in body
    assert "[REDACTED]" in body
    for spelling in (KEY, quote(KEY, safe="")):
        assert spelling not in proxy.stderr()
        assert spelling not in (proxy.state_dir / "flows" / "flows.jsonl").read_text()
