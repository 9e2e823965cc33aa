"""Raw HTTP/1 client helpers for protocol tests: send exact bytes through the proxy (plain, or inside a
CONNECT tunnel with TLS) and read one response at a time, so a test controls every byte on the wire."""

from __future__ import annotations

import json
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import h2.config
import h2.connection
import h2.events

_H2_END = h2.events.StreamEnded | h2.events.StreamReset | h2.events.ConnectionTerminated


@dataclass
class Answer:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


class Client:
    """One client connection to the proxy (optionally a TLS tunnel to `tunnel`, trusted with `ca`)."""

    def __init__(self, proxy_port: int, tunnel: str | None = None, ca: Path | None = None,
                 sni: str | None = None, timeout: float = 15):
        self.sock: socket.socket = socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout)
        self.buf = b""
        if tunnel is not None:
            self.sock.sendall(f"CONNECT {tunnel} HTTP/1.1\r\nHost: {tunnel}\r\n\r\n".encode())
            answer = self.read()
            assert answer.status == 200, answer
            if ca is not None:
                ctx = ssl.create_default_context(cafile=str(ca))
                ctx.check_hostname = False
                self.sock = ctx.wrap_socket(self.sock, server_hostname=sni or tunnel.rsplit(":", 1)[0])

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except (TimeoutError, ConnectionResetError, ssl.SSLError):
            return False
        self.buf += chunk
        return bool(chunk)

    def read(self) -> Answer:
        """The next response (Content-Length or chunked body; none for 1xx/204/304 or a CONNECT 200)."""
        while b"\r\n\r\n" not in self.buf:
            if not self._more():
                raise ConnectionError(f"connection closed before a response head: {self.buf[:200]!r}")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        _, status, *reason = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        code = int(status)
        body = b""
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n and self._more():
                pass
            body, self.buf = self.buf[:n], self.buf[n:]
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                while b"\r\n" not in self.buf and self._more():
                    pass
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while b"\r\n\r\n" not in b"\r\n" + self.buf and self._more():
                        pass
                    self.buf = (b"\r\n" + self.buf).split(b"\r\n\r\n", 1)[1]
                    break
                while len(self.buf) < size + 2 and self._more():
                    pass
                body, self.buf = body + self.buf[:size], self.buf[size + 2:]
        return Answer(code, reason[0] if reason else "", headers, body)

    def closed(self) -> bool:
        """True once the proxy has closed this connection (waits up to the socket timeout)."""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return False
            except OSError:  # reset, or a TLS connection cut without close_notify
                return True
            if not chunk:
                return True
            self.buf += chunk

    def close(self) -> None:
        self.sock.close()


def request(method: str, target: str, host: str, headers: str = "", body: bytes = b"") -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body else ""
    return f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n{headers}{length}\r\n".encode() + body


def h2_request(proxy_port: int, authority: str, ca: Path, headers: list[tuple[str, str]],
               body: bytes | None = None, chunk: int = 16384,
               trailers: list[tuple[str, str]] | None = None) -> tuple[int, bytes, int]:
    """One HTTP/2 request inside a TLS tunnel, its body streamed as flow control allows (no
    content-length unless `headers` has one); returns (status, response body, body bytes sent).
    Stops sending once the response has ended (the proxy may answer before the body is done)."""
    raw = socket.create_connection(("127.0.0.1", proxy_port), timeout=15)
    raw.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    assert raw.recv(4096).startswith(b"HTTP/1.1 200")
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False
    ctx.set_alpn_protocols(["h2"])
    tls = ctx.wrap_socket(raw, server_hostname=authority.rsplit(":", 1)[0])
    assert tls.selected_alpn_protocol() == "h2"
    config = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False)
    conn = h2.connection.H2Connection(config)
    conn.initiate_connection()
    conn.send_headers(1, headers, end_stream=body is None)
    tls.sendall(conn.data_to_send())
    tls.settimeout(0.05)
    status, received, sent, done = 0, b"", 0, False
    body = body or b""
    idle = 0
    while not done and idle < 300:
        if sent < len(body):
            n = min(chunk, len(body) - sent, conn.local_flow_control_window(1), conn.max_outbound_frame_size)
            if n > 0:
                conn.send_data(1, body[sent:sent + n], end_stream=not trailers and sent + n == len(body))
                sent += n
                if trailers and sent == len(body):
                    conn.send_headers(1, trailers, end_stream=True)
        tls.sendall(conn.data_to_send())
        try:
            data = tls.recv(65536)
        except TimeoutError:
            idle += 1
            continue
        idle = 0
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                status = int(dict(ev.headers)[b":status"])
            elif isinstance(ev, h2.events.DataReceived):
                received += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, _H2_END):
                done = True
        tls.sendall(conn.data_to_send())
    tls.close()
    return status, received, sent
