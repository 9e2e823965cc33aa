"""Interim responses and trailers (issue 7, item 13): a 103 Early Hints (or any 1xx but 101) is not the
final response, and HTTP/1 trailers do not break the connection. Raw-socket upstreams write exactly
these bytes; real clients (curl, requests) and a raw client (two requests on one connection) read them.
The control shows stock mitmproxy taking the 103 for the answer and tearing down on trailers."""

from __future__ import annotations

import pytest
import requests

from .conftest import NAMES, curl, flow_records
from .rawserver import RawConn, RawServer, ok
from .wire import Client, h2_request, request

POLICY = """\
network:
  egress:
    - host: "127.0.0.1"
      ports: [{ports}]
      action: allow
"""
HINTS = (b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
         b"HTTP/1.1 100 Continue\r\n\r\n"
         b"HTTP/1.1 102 Processing\r\n\r\n")
TRAILERS = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n")


def _hints(conn: RawConn) -> None:
    while conn.read_head():
        conn.send(HINTS)
        conn.send(ok(b"final"))


def _trailers(conn: RawConn) -> None:
    while head := conn.read_head():
        if b"chunked" in head.lower():
            conn.read_chunked_body()
        conn.send(TRAILERS)


@pytest.fixture(scope="module")
def servers(test_ca):
    ctx = test_ca.server_context(NAMES)
    with RawServer(_hints) as hints, RawServer(_hints, tls=ctx) as hints_tls, \
            RawServer(_trailers) as trailers, RawServer(_trailers, tls=ctx) as trailers_tls:
        yield {"hints": hints, "hints_tls": hints_tls, "trailers": trailers, "trailers_tls": trailers_tls}


@pytest.fixture
def proxy(make_proxy, servers):
    return make_proxy(POLICY.format(ports=", ".join(str(s.port) for s in servers.values())))


def _session(proxy) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.proxies = {"http": proxy.url, "https": proxy.url}
    s.verify = str(proxy.ca_bundle)
    return s


def _raw(proxy, server: RawServer, scheme: str) -> tuple[Client, str, str]:
    """A raw client: plain (absolute-form targets) or inside a TLS tunnel (origin-form)."""
    authority = f"127.0.0.1:{server.port}"
    if scheme == "https":
        return Client(proxy.port, tunnel=authority, ca=proxy.ca_bundle), "", authority
    return Client(proxy.port), f"http://{authority}", authority


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_interim_responses_are_not_the_answer(proxy, servers, scheme):
    server = servers["hints_tls" if scheme == "https" else "hints"]
    url = f"{scheme}://127.0.0.1:{server.port}/page"
    assert curl(proxy, url) == (200, "final")
    r = _session(proxy).get(url)
    assert (r.status_code, r.text) == (200, "final")
    client, base, authority = _raw(proxy, server, scheme)
    for _ in range(2):  # the connection stays in step: each request gets its own final answer
        client.send(request("GET", f"{base}/again", authority))
        answer = client.read()
        assert (answer.status, answer.body) == (200, b"final")
    client.close()
    assert all(r["status"] == 200 for r in flow_records(proxy))


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_response_trailers_keep_the_connection(proxy, servers, scheme):
    server = servers["trailers_tls" if scheme == "https" else "trailers"]
    url = f"{scheme}://127.0.0.1:{server.port}/t"
    assert curl(proxy, url) == (200, "hello world")
    session = _session(proxy)
    for _ in range(2):
        r = session.get(url)
        assert (r.status_code, r.text) == (200, "hello world")
    client, base, authority = _raw(proxy, server, scheme)
    for _ in range(2):
        client.send(request("GET", f"{base}/t", authority))
        answer = client.read()
        assert (answer.status, answer.body) == (200, b"hello world")
    client.close()


def test_request_trailers_are_dropped_not_fatal(proxy, servers):
    server = servers["trailers"]
    authority = f"127.0.0.1:{server.port}"
    client = Client(proxy.port)
    client.send(request("POST", f"http://{authority}/up", authority, "Transfer-Encoding: chunked\r\n")
                + b"4\r\ndata\r\n0\r\nX-Client-Trailer: secret-ish\r\n\r\n")
    answer = client.read()
    client.close()
    assert answer.status == 200
    received = server.conns[-1].received
    assert b"4\r\ndata\r\n0\r\n\r\n" in received and b"X-Client-Trailer" not in received


def test_control_stock_mitmproxy_takes_103_for_the_answer(stock_proxy, servers):
    authority = f"127.0.0.1:{servers['hints'].port}"
    client = Client(stock_proxy.port)
    client.send(request("GET", f"http://{authority}/page", authority))
    assert client.read().status == 103
    client.close()
    authority = f"127.0.0.1:{servers['trailers'].port}"
    client = Client(stock_proxy.port, timeout=3)
    client.send(request("GET", f"http://{authority}/t", authority))
    with pytest.raises(ConnectionError):  # mitmproxy raises NotImplementedError and drops the connection
        client.read()
    client.close()


def _h2_with_trailers(proxy_port: int, ca, port: int) -> int:
    authority = f"127.0.0.1:{port}"
    headers = [(":method", "POST"), (":scheme", "https"), (":authority", authority), (":path", "/up")]
    status, _, _ = h2_request(proxy_port, authority, ca, headers, b"data", trailers=[("x-checksum", "abc")])
    return status


def test_http2_request_trailers_to_an_http1_upstream(proxy, servers):
    """gRPC-style request trailers from an HTTP/2 client: dropped for the HTTP/1 upstream, not fatal."""
    server = servers["trailers_tls"]
    assert _h2_with_trailers(proxy.port, proxy.ca_bundle, server.port) == 200
    received = server.conns[-1].received
    assert b"4\r\ndata\r\n0\r\n\r\n" in received and b"x-checksum" not in received


def test_control_stock_mitmproxy_fails_http2_request_trailers(stock_proxy, servers):
    assert _h2_with_trailers(stock_proxy.port, stock_proxy.ca_cert, servers["trailers_tls"].port) != 200
