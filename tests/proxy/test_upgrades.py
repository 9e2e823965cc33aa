"""Protocol upgrades never turn a judged connection into a raw pipe (issue 7, item 3).

The upstream here is malicious: it answers 101 to whatever it gets and then reads raw bytes, so any
later request the client writes on that connection would reach it with no decision and no record.
The control runs the same attack through stock mitmproxy, where that second request does arrive."""

from __future__ import annotations

import base64
import hashlib
import os
import struct

import pytest

from .conftest import NAMES, flow_records
from .rawserver import RawConn, RawServer
from .wire import Client, request

POLICY = """\
network:
  egress:
    - host: "127.0.0.1"
      ports: [{port}]
      paths:
        - path: "/app/**"
          methods: ["GET"]
      action: allow
    - action: deny
"""
SWITCH = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
SECOND = b"DELETE /admin/users HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _switch_always(conn: RawConn) -> None:
    if conn.read_head():
        conn.send(SWITCH)
        conn.drain(4)  # whatever comes now would be unjudged: it is recorded in conn.received


UPGRADES = {
    "unsolicited": "",
    "h2c": "Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n",
    "H2C-case": "Upgrade: H2C\r\nConnection: upgrade\r\n",
    "token-list": "Upgrade: foo/1, h2C\r\nConnection: keep-alive, UPGRADE\r\n",
    "two-fields": "Upgrade: tls/1.2\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n",
    "websocket-answered-h2c": ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
}


@pytest.fixture
def switching(make_proxy, test_ca):
    with RawServer(_switch_always) as plain, RawServer(_switch_always,
                                                      tls=test_ca.server_context(NAMES)) as tls:
        yield plain, tls


@pytest.mark.parametrize("tunnel", [False, True], ids=["plain", "tls-tunnel"])
@pytest.mark.parametrize("upgrade", list(UPGRADES))
def test_101_never_becomes_a_pipe(make_proxy, switching, upgrade, tunnel):
    plain, tls = switching
    server = tls if tunnel else plain
    proxy = make_proxy(POLICY.format(port=server.port))
    authority = f"127.0.0.1:{server.port}"
    client = Client(proxy.port, tunnel=authority if tunnel else None, ca=proxy.ca_bundle if tunnel else None)
    target = "/app/x" if tunnel else f"http://{authority}/app/x"
    client.send(request("GET", target, authority, UPGRADES[upgrade]))
    answer = client.read()
    assert answer.status == 502, answer
    assert answer.json()["error"] == "upstream-failure" and "101" in answer.json()["reason"]
    assert answer.headers.get("connection") == "close"
    client.send(SECOND)  # what a pipe would carry to the upstream unjudged
    assert client.closed()
    client.close()
    server.conns[-1].closed.wait(6)
    received = server.received()
    assert b"DELETE" not in received
    forwarded = received.split(b"\r\n\r\n", 1)[0].lower()
    if upgrade != "websocket-answered-h2c":
        assert b"upgrade" not in forwarded and b"http2-settings" not in forwarded
    records = flow_records(proxy)
    assert [(r["method"], r["path"], r["decision"], r["status"]) for r in records] == [
        ("GET", "/app/x", "allow", 502)]
    assert "101" in records[0]["error"]


def test_control_stock_mitmproxy_pipes_the_second_request(stock_proxy):
    """Without our protections the switched connection is a pipe: the DELETE reaches the upstream."""
    with RawServer(_switch_always) as server:
        authority = f"127.0.0.1:{server.port}"
        client = Client(stock_proxy.port)
        client.send(request("GET", f"http://{authority}/app/x", authority, UPGRADES["h2c"]))
        assert client.read().status == 101
        client.send(SECOND)
        server.conns[-1].closed.wait(6)
        client.close()
        assert SECOND in server.received()


def test_a_second_connection_is_judged(make_proxy, switching):
    """After the refused switch, the same request on a new connection is decided and recorded."""
    plain, _ = switching
    proxy = make_proxy(POLICY.format(port=plain.port))
    authority = f"127.0.0.1:{plain.port}"
    client = Client(proxy.port)
    client.send(request("DELETE", f"http://{authority}/admin/users", authority))
    answer = client.read()
    assert answer.status == 403
    assert plain.conns == []
    records = flow_records(proxy)
    assert [(r["method"], r["decision"], r["status"]) for r in records] == [("DELETE", "deny", 403)]


# -- a legitimate WebSocket -----------------------------------------------------------------------

def _accept(key: str) -> str:
    digest = hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    return base64.b64encode(digest).decode()


def _frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked


def _read_frame(conn: RawConn) -> bytes:
    head = conn.read_exact(2)
    if len(head) < 2:
        return b""
    n = head[1] & 0x7F
    mask = conn.read_exact(4) if head[1] & 0x80 else b"\0\0\0\0"
    data = conn.read_exact(n)
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def test_allowed_websocket_relays_frames_after_its_record(make_proxy):
    seen: dict[str, object] = {}

    def websocket(conn: RawConn) -> None:
        head = conn.read_head().decode("latin-1")
        key = next(line.split(":", 1)[1].strip() for line in head.split("\r\n")
                   if line.lower().startswith("sec-websocket-key"))
        seen["head"] = head
        conn.send(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Accept: {_accept(key)}\r\n\r\n".encode())
        seen["message"] = _read_frame(conn)
        seen["records_at_message"] = flow_records(seen["proxy"])  # type: ignore[arg-type]
        conn.drain(3)

    with RawServer(websocket) as server:
        proxy = make_proxy(POLICY.format(port=server.port))
        seen["proxy"] = proxy
        authority = f"127.0.0.1:{server.port}"
        client = Client(proxy.port)
        client.send(request("GET", f"http://{authority}/app/ws", authority,
                            "Upgrade: WebSocket, h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                            "HTTP2-Settings: AAA\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"))
        assert client.read().status == 101
        client.send(_frame(b"hello"))
        client.send(SECOND)  # not a WebSocket frame: the WebSocket layer refuses it, nothing is piped
        server.conns[-1].closed.wait(8)
        client.close()
        assert seen["message"] == b"hello"
        head = str(seen["head"]).lower()
        assert "upgrade: websocket\r\n" in head and "http2-settings" not in head  # only the websocket token
        records = seen["records_at_message"]
        assert [(r["method"], r["path"], r["status"]) for r in records] == [("GET", "/app/ws", 101)]
        assert b"DELETE" not in server.received()


def test_websocket_upgrade_on_a_denied_request_is_not_forwarded(make_proxy):
    with RawServer(_switch_always) as server:
        proxy = make_proxy(POLICY.format(port=server.port))
        authority = f"127.0.0.1:{server.port}"
        client = Client(proxy.port)
        client.send(request("GET", f"http://{authority}/other", authority,
                            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"))
        assert client.read().status == 403
        client.close()
        assert server.conns == []
