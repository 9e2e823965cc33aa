"""Request smuggling through the proxy: what the policy evaluates must be what the upstream parses.

mitmproxy re-frames HTTP/1 requests, but it forwards header values, methods and queries byte for
byte; an HTTP/2 client can put CR/LF in them, and an HTTP/1 client a bare CR, which an HTTP/1
upstream (here Python's http.server, which splits header lines on a bare CR too) reads as new
header lines or a whole second request that no rule ever judged. An HTTP/2 body need not state its
length; forwarded unframed to an HTTP/1 upstream it would be read as further requests. Real proxy,
real h2 client, real upstream servers on loopback; the controls run stock mitmproxy."""

from __future__ import annotations

import re
import socket
import ssl

import h2.config
import h2.connection
import h2.events
import pytest

from .conftest import NAMES, flow_records
from .rawserver import RawConn, RawServer, ok
from .test_enforcement import PINS, SEED
from .test_inference import REAL_KEY
from .test_inference import routed as routed  # the inference route fixture, shared
from .wire import h2_request


@pytest.fixture
def seed_proxy(make_proxy, upstream, upstream_tls):
    upstream.clear()
    upstream_tls.clear()
    return make_proxy(SEED.format(port=upstream.port, tls_port=upstream_tls.port), resolve=PINS)


def _h1(proxy, request: bytes) -> int:
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    raw.sendall(request)
    data = b""
    while b"\r\n" not in data and (chunk := raw.recv(65536)):
        data += chunk
    raw.close()
    return int(data.split(b" ", 2)[1])


_END = h2.events.StreamEnded | h2.events.StreamReset | h2.events.ConnectionTerminated


def _h2(proxy, authority: str, sni: str, headers: list[tuple[str, str]]) -> tuple[int, bytes]:
    """One HTTP/2 request inside a CONNECT tunnel; header values are sent exactly as given."""
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    raw.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    assert raw.recv(4096).startswith(b"HTTP/1.1 200")
    ctx = ssl.create_default_context(cafile=str(proxy.ca_bundle))
    ctx.set_alpn_protocols(["h2"])
    tls = ctx.wrap_socket(raw, server_hostname=sni)
    assert tls.selected_alpn_protocol() == "h2"
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False))
    conn.initiate_connection()
    conn.send_headers(1, headers, end_stream=True)
    tls.sendall(conn.data_to_send())
    status, body, done = 0, b"", False
    while not done and (data := tls.recv(65536)):
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                status = int(dict(ev.headers)[b":status"])
            elif isinstance(ev, h2.events.DataReceived):
                body += ev.data
                conn.acknowledge_received_data(len(ev.data), ev.stream_id)
            elif isinstance(ev, _END):
                done = True
        tls.sendall(conn.data_to_send())
    tls.close()
    return status, body


def test_bare_cr_in_header_value_is_refused(seed_proxy, upstream):
    """`X-Foo: a<CR>X-HTTP-Method-Override: DELETE`: the policy sees one harmless header, the upstream
    a method override the policy refuses (test_method_override_is_refused)."""
    a = f"api.example.com:{upstream.port}"
    code = _h1(seed_proxy, f"GET http://{a}/v1/users/1 HTTP/1.1\r\nHost: {a}\r\n"
                           "X-Foo: a\rX-HTTP-Method-Override: DELETE\r\nConnection: close\r\n\r\n".encode())
    assert code == 400
    assert upstream.requests == []


H2_ATTACKS = {
    # a whole second request, never decided, in a header value
    "header-crlf": ("/v1/users/1", [("x-foo", "a\r\n\r\nDELETE /v1/users/1 HTTP/1.1\r\nX-Pad: b")]),
    "header-nul": ("/v1/users/1", [("x-foo", "a\x00b")]),
    # the request line continues into injected header lines
    "query-crlf": ("/v1/users/1?a=b HTTP/1.1\r\nX-HTTP-Method-Override: DELETE\r\nX-Pad: c", []),
    "query-space": ("/v1/users/1?a=b /admin", []),
}


@pytest.mark.parametrize("attack", list(H2_ATTACKS))
def test_h2_to_h1_injection_is_refused(seed_proxy, upstream_tls, attack):
    path, extra = H2_ATTACKS[attack]
    a = f"api.example.com:{upstream_tls.port}"
    ok, _ = _h2(seed_proxy, a, "api.example.com",
                [(":method", "GET"), (":scheme", "https"), (":authority", a), (":path", "/v1/users/1")])
    assert ok == 200 and [(q.method, q.path) for q in upstream_tls.requests] == [("GET", "/v1/users/1")]
    upstream_tls.clear()
    code, _ = _h2(seed_proxy, a, "api.example.com",
                  [(":method", "GET"), (":scheme", "https"), (":authority", a), (":path", path), *extra])
    assert code == 400
    assert upstream_tls.requests == []


@pytest.mark.parametrize("where", ["header", "method"])
def test_h2_smuggling_on_an_inference_route_is_refused(routed, fake_openai, where):
    """On a route only a few caller headers survive and the method is not judged by a rule; a CR/LF
    there would make the backend run a request of the caller's choosing with the injected key."""
    smuggled = "GET /v1/echo-auth HTTP/1.1\r\nX-Pad: p"
    method = f"{smuggled}\r\nX-Pad2:" if where == "method" else "GET"
    headers = [(":method", method), (":scheme", "https"), (":authority", "inference.local"),
               (":path", "/v1/models")]
    if where == "header":
        headers.append(("user-agent", f"x\r\n\r\n{smuggled}"))
    code, body = _h2(routed, "inference.local:443", "inference.local", headers)
    assert code == 400, body
    assert fake_openai.requests == []
    assert REAL_KEY.encode() not in body


def test_upstream_gets_the_host_header_that_was_judged(seed_proxy, upstream):
    """The Host header is forwarded in the canonical spelling the policy judged, not the client's
    (upper case, a trailing dot, a zero-padded port)."""
    code = _h1(seed_proxy, f"GET http://api.example.com:{upstream.port}/v1/users/1 HTTP/1.1\r\n"
                           f"Host: API.Example.COM.:0{upstream.port}\r\nConnection: close\r\n\r\n".encode())
    assert code == 200
    hosts = [v for k, v in upstream.requests[0].headers if k.lower() == "host"]
    assert hosts == [f"api.example.com:{upstream.port}"]


# -- an HTTP/2 body without a length, forwarded to an HTTP/1 upstream --------------------------------

def _heads(conn: RawConn) -> None:
    """Serves requests one after the other, framing bodies as HTTP/1 does; `conn.heads` lists them."""
    conn.heads = []  # type: ignore[attr-defined]
    while head := conn.read_head():
        conn.heads.append(head)  # type: ignore[attr-defined]
        lower = head.lower()
        if b"transfer-encoding: chunked" in lower and not conn.read_chunked_body():
            return
        if m := re.search(rb"content-length: *(\d+)", lower):
            conn.read_exact(int(m.group(1)))
        conn.send(ok())


H2_SMUGGLE_POLICY = """\
network:
  egress:
    - host: "127.0.0.1"
      ports: [{port}]
      paths:
        - path: "/v1/upload"
          methods: ["POST"]
      action: allow
    - action: deny
"""


def _smuggle(proxy_port: int, ca, port: int) -> None:
    authority = f"127.0.0.1:{port}"
    second = f"DELETE /admin/users HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\n\r\n".encode()
    headers = [(":method", "POST"), (":scheme", "https"), (":authority", authority), (":path", "/v1/upload")]
    status, _, _ = h2_request(proxy_port, authority, ca, headers, body=second)
    assert status == 200


def test_h2_body_without_length_is_framed_for_http1(make_proxy, test_ca):
    """No content-length in an HTTP/2 request: the body must not reach an HTTP/1 upstream unframed,
    where the DELETE inside it would be a second request that no rule judged."""
    with RawServer(_heads, tls=test_ca.server_context(NAMES)) as server:
        proxy = make_proxy(H2_SMUGGLE_POLICY.format(port=server.port))
        _smuggle(proxy.port, proxy.ca_bundle, server.port)
        server.conns[-1].closed.wait(3)
        heads = [h for c in server.conns for h in c.heads]
        assert [h.split(b" ", 2)[:2] for h in heads] == [[b"POST", b"/v1/upload"]]
        assert b"transfer-encoding: chunked" in heads[0].lower()
        assert len(flow_records(proxy)) == 1


def test_control_stock_mitmproxy_smuggles_the_h2_body(stock_proxy, test_ca):
    with RawServer(_heads, tls=test_ca.server_context(NAMES)) as server:
        _smuggle(stock_proxy.port, stock_proxy.ca_cert, server.port)
        server.conns[-1].closed.wait(3)
        heads = [h for c in server.conns for h in c.heads]
        assert [h.split(b" ", 2)[0] for h in heads] == [b"POST", b"DELETE"]
