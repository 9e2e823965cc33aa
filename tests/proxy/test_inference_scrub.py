"""Attack tests for the key scrubber: a malicious inference backend (`leaky_backend`) echoes the injected
key back in every spelling, place, framing and content coding the scrubber promises to cover; through the
real proxy, with real clients, the caller never sees it. Each attack has a control: the same response on
a path without an injected key (a plain allow rule to the same backend, the client sending the key
itself) does show the spelling, so each check can see a failure. Normal responses, SSE streaming
included, are passed byte for byte."""

from __future__ import annotations

import json
import socket
import time

import httpx
import openai
import pytest
import requests
from mitmproxy import http

from jupyter_openshell.proxy._codings import decoder_for
from jupyter_openshell.proxy._scrub import find
from jupyter_openshell.testing import start_proxy

from .leaky_backend import LeakyBackend, forms

KEY = "sk-live/Abc+def=ghi_0123456789/XYZ~q.r"  # holds '/', '+', '=' and '~'
POLICY = """\
network:
  egress:
    - host: "127.0.0.1"  # the control path: the same backend, no route, no scrubbing
      ports: [{port}]
      action: allow
inference:
  routes:
    - caller_pattern: ".*"
      backend:
        url: "http://llm.test:{port}/v1"
        addresses: ["127.0.0.1"]  # the backend lives on loopback, refused unless named
        auth:
          type: bearer
          token_from_secret: "llm-key"
"""
FRAMES = ["cl", "chunked", "close", "sse", "big", "bigcl"]
CODINGS = ["gzip", "deflate", "rawdeflate", "br", "zstd", "gzip, br", "x-gzip"]
SOME_FORMS = ["raw", "json_slash", "pct", "json_u_some", "html_hex", "b64bearer", "b64basic_json", "hex"]


@pytest.fixture(scope="module")
def leaky():
    with LeakyBackend() as srv:
        yield srv


@pytest.fixture(scope="module")
def proxy(leaky, tmp_path_factory):
    state = tmp_path_factory.mktemp("scrub-state")
    state.chmod(0o700)
    policy = state / "policy.yaml"
    policy.write_text(POLICY.format(port=leaky.port))
    run = start_proxy(state, policy, resolve={"llm.test": "127.0.0.1"}, env={"OPENSHELL_SECRET_LLM_KEY": KEY})
    yield run
    run.stop()


@pytest.fixture(scope="module")
def session(proxy):
    s = requests.Session()
    s.trust_env = False
    s.proxies = {"http": proxy.url, "https": proxy.url}
    return s


def fetch(session, leaky, routed: bool, **q) -> tuple[int, dict, bytes]:
    """(status, headers, body as the caller reads it: decoded from any Content-Encoding left on it)."""
    url = "http://inference.local/v1/leak" if routed else f"http://127.0.0.1:{leaky.port}/v1/leak"
    headers = {} if routed else {"Authorization": f"Bearer {KEY}"}
    r = session.get(url, params=q, headers=headers, stream=True, allow_redirects=False, timeout=20)
    raw = r.raw.read(decode_content=False)
    coding = r.headers.get("content-encoding", "")
    if coding == "x-unknown":
        raw = raw[::-1]
    elif coding:
        dec = decoder_for([coding])
        raw = dec(raw, True) if dec else raw
    return r.status_code, dict(r.headers), raw


def _seen(spelling: str, headers: dict, body: bytes) -> bool:
    return spelling.encode() in body or spelling in _lines(headers)


def _lines(headers: dict) -> str:
    return "\n".join(f"{k}: {v}" for k, v in headers.items())


def _check(session, leaky, combos) -> None:
    """Each combo through the route must hide its spelling; through the control path it must show."""
    missed, undetected = [], []
    for form, q in combos:
        spelling = forms(KEY)[form]
        status, headers, body = fetch(session, leaky, True, form=form, **q)
        if _seen(spelling, headers, body) or find(body, KEY.encode())[0] or status == 0:
            missed.append((form, q))
        elif "[REDACTED]" not in body.decode("latin-1") + _lines(headers):
            missed.append((form, q, "no [REDACTED] marker"))
        _, c_headers, c_body = fetch(session, leaky, False, form=form, **q)
        if not _seen(spelling, c_headers, c_body):
            undetected.append((form, q))
    assert missed == [], f"the key reached the caller: {missed}"
    assert undetected == [], f"control: the spelling did not come back without scrubbing: {undetected}"


def test_every_spelling_in_a_body_is_scrubbed(session, leaky):
    _check(session, leaky, [(f, {"frame": frame}) for f in forms(KEY) for frame in ("cl", "chunked")])


@pytest.mark.parametrize("frame", FRAMES)
def test_streamed_and_large_bodies_are_scrubbed(session, leaky, frame):
    """chunked in 7-byte chunks (the key split at every offset), SSE, close-delimited, > 256 KiB."""
    _check(session, leaky, [(f, {"frame": frame}) for f in SOME_FORMS])


@pytest.mark.parametrize("coding", CODINGS)
def test_compressed_bodies_are_scrubbed(session, leaky, coding):
    _check(session, leaky, [(f, {"frame": frame, "coding": coding}) for f in SOME_FORMS[:4]
                            for frame in ("cl", "chunked", "sse", "big")])


@pytest.mark.parametrize("where", ["header", "setcookie", "location", "wwwauth"])
def test_response_headers_are_scrubbed(session, leaky, where):
    _check(session, leaky, [(f, {"where": where}) for f in SOME_FORMS])


def test_unknown_coding_is_refused_not_passed(session, leaky):
    for frame in ("cl", "chunked", "big"):
        status, _, body = fetch(session, leaky, True, form="raw", frame=frame, coding="x-unknown")
        assert status == 502, (frame, status)
        assert "cannot be checked for the key" in json.loads(body)["error"]
        assert KEY.encode()[::-1] not in body and KEY.encode() not in body
        _, _, c_body = fetch(session, leaky, False, form="raw", frame=frame, coding="x-unknown")
        assert KEY.encode() in c_body  # control: this coding does carry the key


def _raw_get(proxy, leaky, target: str, routed: bool) -> bytes:
    """One HTTP/1.1 request on a raw socket; everything the proxy sent back until it went quiet."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        auth = "" if routed else f"Authorization: Bearer {KEY}\r\n"
        host = "inference.local" if routed else f"127.0.0.1:{leaky.port}"
        head = f"GET http://{host}{target} HTTP/1.1\r\nHost: {host}\r\nTE: trailers\r\n{auth}\r\n"
        s.sendall(head.encode())
        out = b""
        s.settimeout(2)
        try:
            while chunk := s.recv(65536):
                out += chunk
                if out.endswith(b"\r\n\r\n") and b"\r\n0\r\n" in out:
                    break
        except TimeoutError:
            pass
        return out


def test_http1_trailers_never_carry_the_key(proxy, leaky):
    """mitmproxy 11 does not relay HTTP/1 response trailers (the body is cut); whatever it does with
    them, the key must not come through."""
    for form in SOME_FORMS:
        before = len(leaky.seen)
        out = _raw_get(proxy, leaky, f"/v1/leak?where=trailer&frame=chunked&form={form}", routed=True)
        assert forms(KEY)[form].encode() not in out and not find(out, KEY.encode())[0], form
        assert leaky.seen[before]["headers"]["authorization"] == f"Bearer {KEY}"  # it had the key to echo


@pytest.mark.parametrize("form", SOME_FORMS)
def test_trailers_are_scrubbed(form):
    """Trailers (HTTP/2, and HTTP/1 where relayed) are scrubbed in the response hook, for buffered and
    streamed bodies; control: the same response on a flow without an injected key keeps them."""
    from mitmproxy.test import tflow

    from jupyter_openshell.proxy.addons.inference import META_SECRET, InferenceRouter

    spelling = forms(KEY)[form].encode()
    for streamed in (False, True):
        for secret in (KEY.encode(), None):
            flow = tflow.tflow(resp=True)
            flow.response.trailers = http.Headers([(b"x-echo", spelling), (spelling, b"v")])
            flow.response.stream = streamed
            if secret:
                flow.metadata[META_SECRET] = secret
            InferenceRouter(None).response(flow)  # type: ignore[arg-type]
            text = b"\n".join(k + b": " + v for k, v in flow.response.trailers.fields)
            assert (spelling in text) is (secret is None), (form, streamed, secret)


def test_switching_protocols_on_a_route_closes(proxy, leaky):
    before = len(leaky.seen)
    out = _raw_get(proxy, leaky, "/v1/leak?where=upgrade&form=raw", routed=True)
    assert KEY.encode() not in out and not out.startswith(b"HTTP/1.1 101")
    # control: the backend did answer 101 and the key, and received the injected key
    assert leaky.seen[before]["headers"]["authorization"] == f"Bearer {KEY}"


def test_normal_responses_pass_byte_for_byte(proxy, leaky):
    """No key in the response: the routed body equals the direct one, SSE streaming included, and the
    real openai client works (JSON and streaming)."""
    with httpx.Client(proxy=proxy.url, trust_env=False) as c:
        for stream in (False, True):
            req = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
            routed = c.post("http://inference.local/v1/chat/completions", json=req)
            direct = c.post(f"http://127.0.0.1:{leaky.port}/v1/chat/completions", json=req)
            assert routed.status_code == direct.status_code == 200
            assert routed.content == direct.content
        client = openai.OpenAI(base_url="http://inference.local/v1", api_key="caller", http_client=c)
        out = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert out.choices[0].message.content == "Hello world, 50% & \\u00e9 a/b"
        pieces = [e.choices[0].delta.content for e in client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True)]
        assert "".join(pieces) == 'Hello world, 50% & \\u00e9 "q" a/b'


def test_sse_events_are_not_held_back(proxy, leaky):
    """The scrubber holds back only what could still become the key: each event arrives as it is sent."""
    with httpx.Client(proxy=proxy.url, trust_env=False, timeout=10) as c:
        req = {"model": "m", "messages": [], "stream": True}
        with c.stream("POST", "http://inference.local/v1/chat/completions", json=req) as r:
            first = next(r.iter_raw())
        assert first.startswith(b"data: ") and first.endswith(b"\n\n")


def test_key_never_logged(proxy, session, leaky):
    fetch(session, leaky, True, form="raw", frame="chunked", coding="x-unknown")
    time.sleep(0.3)
    flows = (proxy.state_dir / "flows" / "flows.jsonl").read_text()
    assert '"route"' in flows
    for text in (proxy.stderr(), flows):
        assert KEY not in text and not find(text.encode(), KEY.encode())[0]
