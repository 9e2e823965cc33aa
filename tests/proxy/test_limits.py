"""Request size limits (issue 7, item 10): 414 for a request line / URL, 431 for headers (size or count),
413 for a body, each a JSON answer and a flow record (decision "deny", rule "limits"); bodies are
counted as they stream, never buffered to be measured. A policy may set its own `max_body`.
Bounded: the proxies here run with `--max-body 1M`, so no test sends more than a few MB. The control
sends the same requests through stock mitmproxy, which forwards every one of them."""

from __future__ import annotations

import contextlib
import re
import socket

import pytest

from .conftest import NAMES, flow_records
from .rawserver import RawConn, RawServer, ok
from .test_smuggling import _h2
from .wire import Client, h2_request, request

POLICY = """\
network:
  egress:
    - host: "127.0.0.1"
      ports: [{port}]
      paths:
        - path: "/up/**"
          methods: ["GET", "POST"]
      action: allow
    - action: deny
"""
MiB = 1 << 20
# An upload that could not carry a method override (`_method`): its body streams, and only the size
# limit stops it (a form or a body without Content-Type would be held back and judged first).
BINARY = "Content-Type: application/octet-stream\r\n"


def _sink(conn: RawConn) -> None:
    """Reads each request (kept in conn.received) and answers 200 once it is complete."""
    while head := conn.read_head():
        lower = head.lower()
        if b"transfer-encoding: chunked" in lower:
            if not conn.read_chunked_body():
                return
        elif m := re.search(rb"content-length: *(\d+)", lower):
            conn.read_exact(int(m.group(1)))
        conn.send(ok())


@pytest.fixture
def sink():
    with RawServer(_sink) as server:
        yield server


@pytest.fixture
def limited(make_proxy, sink):
    return make_proxy(POLICY.format(port=sink.port), extra=["--max-body", "1M"])


def _refused(proxy, status: int) -> dict:
    record = flow_records(proxy)[-1]
    assert (record["decision"], record["rule"], record["status"]) == ("deny", "limits", status), record
    return record


def _send_all(client: Client, data: bytes) -> None:
    """Send what the proxy will take; it may answer (and stop reading) before the end."""
    view = memoryview(data)
    with contextlib.suppress(OSError):
        for i in range(0, len(view), 65536):
            client.sock.sendall(view[i:i + 65536])


@pytest.mark.parametrize("size", [20 * 1024, MiB], ids=["20KiB", "1MiB"])
def test_long_url_is_414(limited, sink, size):
    authority = f"127.0.0.1:{sink.port}"
    client = Client(limited.port)
    _send_all(client, request("GET", f"http://{authority}/up/{'a' * size}", authority))
    answer = client.read()
    client.close()
    assert answer.status == 414, answer
    body = answer.json()
    assert (body["limit"], body["rule"], body["max_bytes"]) == ("max_request_line", "limits", 16384)
    assert body["error"].startswith("request too large:") and "X-OpenShell-Denied".lower() in answer.headers
    assert sink.conns == []
    record = _refused(limited, 414)
    assert record["host"] == "127.0.0.1"
    assert record["path"].startswith("/up/aaa") and len(record["path"]) <= 256


@pytest.mark.parametrize(("count", "size", "limit"), [
    (10_000, 20, "max_header_bytes"),  # too large to be parsed: refused while it arrives
    (250, 20, "max_header_count"),  # parsed, then refused
    (2, 40_000, "max_header_bytes"),
], ids=["10000-fields", "250-fields", "80KB-in-2"])
def test_header_limits_are_431(limited, sink, count, size, limit):
    authority = f"127.0.0.1:{sink.port}"
    headers = "".join(f"X-H{i}: {'v' * size}\r\n" for i in range(count))
    client = Client(limited.port)
    _send_all(client, request("GET", f"http://{authority}/up/x", authority, headers))
    answer = client.read()
    client.close()
    assert answer.status == 431, answer
    assert answer.json()["limit"] == limit
    assert sink.conns == []
    _refused(limited, 431)


@pytest.fixture
def tls_limited(make_proxy, test_ca):
    with RawServer(_sink, tls=test_ca.server_context(NAMES)) as server:
        yield make_proxy(POLICY.format(port=server.port), extra=["--max-body", "1M"]), server


def test_http2_header_count_is_431(tls_limited):
    """An HTTP/2 client inside a TLS tunnel: the same limits, checked on the parsed request."""
    proxy, sink = tls_limited
    authority = f"127.0.0.1:{sink.port}"
    headers = [(":method", "GET"), (":scheme", "https"), (":authority", authority), (":path", "/up/x")]
    code, body = _h2(proxy, authority, "127.0.0.1", headers + [(f"x-h{i}", "v") for i in range(250)])
    assert code == 431, body
    assert sink.conns == []


@pytest.mark.parametrize("declared", [False, True], ids=["no-length", "content-length"])
def test_http2_body_past_the_limit_is_413(tls_limited, declared):
    proxy, sink = tls_limited
    authority = f"127.0.0.1:{sink.port}"
    headers = [(":method", "POST"), (":scheme", "https"), (":authority", authority), (":path", "/up/x"),
               ("content-type", "application/octet-stream")]
    body = b"z" * (3 * MiB)
    if declared:
        headers.append(("content-length", str(len(body))))
    status, answer, sent = h2_request(proxy.port, authority, proxy.ca_bundle, headers, body)
    assert status == 413, answer
    assert sent < 2 * MiB  # answered while the body was still coming
    if declared:
        assert sink.conns == []  # refused on its declared length, before any upstream connection
    else:
        assert sink.conns[0].closed.wait(10)
        assert not sink.conns[0].received.endswith(b"0\r\n\r\n")  # never a complete request upstream
    _refused(proxy, 413)


def _chunked(total: int, chunk: int = 64 * 1024) -> bytes:
    piece = b"%x\r\n%s\r\n" % (chunk, b"b" * chunk)
    return piece * (total // chunk) + b"0\r\n\r\n"


def test_chunked_body_past_the_limit_is_413_while_it_streams(limited, sink):
    authority = f"127.0.0.1:{sink.port}"
    client = Client(limited.port)
    client.send(request("POST", f"http://{authority}/up/upload", authority,
                        BINARY + "Transfer-Encoding: chunked\r\n"))
    _send_all(client, _chunked(3 * MiB))
    answer = client.read()
    client.close()
    assert answer.status == 413, answer
    assert (answer.json()["limit"], answer.json()["max_bytes"]) == ("max_body", MiB)
    assert sink.conns and sink.conns[0].closed.wait(10)
    received = bytes(sink.conns[0].received)
    body = received.split(b"\r\n\r\n", 1)[1]
    assert 256 * 1024 < len(body) < MiB + 64 * 1024  # it streamed (not buffered), and stopped at the limit
    assert not received.endswith(b"0\r\n\r\n")  # the upstream never saw a complete request
    assert len(sink.conns) == 1
    _refused(limited, 413)


def test_content_length_past_the_limit_is_413_at_once(limited, sink):
    """A declared 1 GiB body is refused before it is sent: nothing is read to measure it, and no
    "100 Continue" invites the client to send it."""
    authority = f"127.0.0.1:{sink.port}"
    client = Client(limited.port, timeout=10)
    client.send(request("POST", f"http://{authority}/up/upload", authority,
                        BINARY + "Content-Length: 1073741824\r\nExpect: 100-continue\r\n"))
    answer = client.read()
    client.close()
    assert answer.status == 413 and answer.headers.get("connection") == "close"
    assert sink.conns == []
    _refused(limited, 413)


def test_within_the_limit_and_the_policy_override(make_proxy, sink):
    """The control of the 413 tests: bodies under the limit pass whole; a policy may raise its limit."""
    policy = POLICY.format(port=sink.port).replace("network:\n", "network:\n  limits:\n    max_body: 2Mi\n")
    proxy = make_proxy(policy, extra=["--max-body", "1M"])
    authority = f"127.0.0.1:{sink.port}"
    client = Client(proxy.port)
    client.send(request("POST", f"http://{authority}/up/a", authority,
                        BINARY + "Transfer-Encoding: chunked\r\n"))
    client.send(_chunked(int(1.5 * MiB)))
    assert client.read().status == 200
    client.send(request("POST", f"http://{authority}/up/b", authority, BINARY, body=b"c" * int(1.5 * MiB)))
    assert client.read().status == 200
    client.send(request("POST", f"http://{authority}/up/c", authority,
                        BINARY + "Transfer-Encoding: chunked\r\n"))
    _send_all(client, _chunked(3 * MiB))
    answer = client.read()
    client.close()
    assert answer.status == 413 and answer.json()["max_bytes"] == 2 * MiB
    assert [r["status"] for r in flow_records(proxy)] == [200, 200, 413]


def test_denied_request_with_a_large_body_gets_its_403(limited, sink):
    """A denial is answered at once, whatever the body; the body is dropped as it arrives."""
    authority = f"127.0.0.1:{sink.port}"
    client = Client(limited.port)
    client.send(request("POST", f"http://{authority}/admin", authority,
                        BINARY + "Transfer-Encoding: chunked\r\n"))
    _send_all(client, _chunked(2 * MiB))
    answer = client.read()
    assert answer.status == 403 and answer.json()["rule"]
    client.send(request("GET", f"http://{authority}/up/after", authority))  # the connection still serves
    assert client.read().status == 200
    client.close()


def test_control_stock_mitmproxy_takes_all_of_it(stock_proxy, sink):
    authority = f"127.0.0.1:{sink.port}"
    client = Client(stock_proxy.port)
    client.send(request("GET", f"http://{authority}/up/{'a' * MiB}", authority))
    assert client.read().status == 200
    headers = "".join(f"X-H{i}: {'v' * 20}\r\n" for i in range(10_000))
    client.send(request("GET", f"http://{authority}/up/x", authority, headers))
    assert client.read().status == 200
    client.send(request("POST", f"http://{authority}/up/upload", authority,
                        BINARY + "Transfer-Encoding: chunked\r\n"))
    client.send(_chunked(3 * MiB))
    assert client.read().status == 200
    client.close()
    assert sink.received().endswith(b"0\r\n\r\n") and len(sink.received()) > 4 * MiB


def test_refused_head_is_read_to_its_end_not_reset(limited, sink):
    """The client gets the 414 even though it is still sending: the proxy half-closes and drains."""
    authority = f"127.0.0.1:{sink.port}"
    raw = socket.create_connection(("127.0.0.1", limited.port), timeout=10)
    data = request("GET", f"http://{authority}/up/{'a' * (4 * MiB)}", authority)
    with contextlib.suppress(OSError):
        raw.sendall(data)
    got = b""
    while chunk := raw.recv(65536):
        got += chunk
    raw.close()
    assert got.startswith(b"HTTP/1.1 414 ")


def test_policy_limits_field_is_validated():
    from jupyter_openshell.policy import PolicyError, parse_policy

    ok_policy = parse_policy("network:\n  limits:\n    max_body: 1Gi\n  egress: []\n")
    assert ok_policy.limits.max_body == 1 << 30
    assert parse_policy("network:\n  egress: []\n").limits.max_body is None
    with pytest.raises(PolicyError) as info:
        parse_policy("network:\n  limits:\n    max_body: 12\n    max_url: 1\n", source="p.yaml")
    text = str(info.value)
    assert "p.yaml:3" in text and "network.limits.max_body" in text and "at least 1Ki" in text
    assert "network.limits.max_url" in text and "unknown key" in text


def test_data_sent_while_waiting_for_a_response_is_capped(make_proxy):
    """mitmproxy buffered, without bound, whatever a client sent while its request was being answered."""
    def slow(conn: RawConn) -> None:
        if conn.read_head():
            conn.drain(3)
            conn.send(ok())

    with RawServer(slow) as server:
        proxy = make_proxy(POLICY.format(port=server.port))
        authority = f"127.0.0.1:{server.port}"
        client = Client(proxy.port)
        client.send(request("GET", f"http://{authority}/up/slow", authority))
        _send_all(client, b"x" * (4 * MiB))
        assert client.closed()
        client.close()
        assert b"xxxx" not in server.received()
