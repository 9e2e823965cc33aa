"""A scripted raw-socket upstream for protocol tests: each accepted connection runs `script(conn)` in a
thread, and every byte the proxy sent on it is kept (`RawServer.conns[i].received`), so a test can
prove what did or did not reach the upstream, byte for byte. Loopback only; optional TLS."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable


class RawConn:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.received = bytearray()
        self._pos = 0  # bytes of `received` consumed by read_head/read_exact
        self.closed = threading.Event()

    def _fill(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except (TimeoutError, OSError):
            return False
        if not chunk:
            return False
        self.received += chunk
        return True

    def read_head(self, timeout: float = 10) -> bytes:
        """The next request head (up to and including the blank line), or b"" at EOF/timeout."""
        deadline = time.monotonic() + timeout
        while (end := self.received.find(b"\r\n\r\n", self._pos)) < 0:
            if time.monotonic() > deadline or not self._fill(max(0.01, deadline - time.monotonic())):
                return b""
        head = bytes(self.received[self._pos:end + 4])
        self._pos = end + 4
        return head

    def read_exact(self, n: int, timeout: float = 10) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.received) - self._pos < n:
            if time.monotonic() > deadline or not self._fill(max(0.01, deadline - time.monotonic())):
                break
        out = bytes(self.received[self._pos:self._pos + n])
        self._pos += len(out)
        return out

    def read_chunked_body(self, timeout: float = 20) -> bool:
        """Read up to the end of a chunked body (its last chunk); False if the connection ends first."""
        deadline = time.monotonic() + timeout
        while not self.received.endswith(b"0\r\n\r\n"):
            if time.monotonic() > deadline or not self._fill(max(0.01, deadline - time.monotonic())):
                return False
        self._pos = len(self.received)
        return True

    def drain(self, seconds: float) -> bytes:
        """Read whatever else arrives for `seconds` (or until EOF); returns it."""
        start = len(self.received)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self._fill(max(0.01, deadline - time.monotonic())):
            pass
        self._pos = len(self.received)
        return bytes(self.received[start:])

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)


class RawServer:
    """`RawServer(script, tls=ctx)`: a listening socket on 127.0.0.1; use as a context manager."""

    def __init__(self, script: Callable[[RawConn], None], tls: ssl.SSLContext | None = None):
        self.script = script
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[RawConn] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._run, args=(sock,), daemon=True).start()

    def _run(self, sock: socket.socket) -> None:
        conn: RawConn | None = None
        try:
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True)
            conn = RawConn(sock)
            self.conns.append(conn)
            self.script(conn)
        except (OSError, ssl.SSLError):
            pass
        finally:
            sock.close()
            if conn is not None:
                conn.closed.set()

    def received(self) -> bytes:
        """Everything received on every connection, in accept order."""
        return b"".join(bytes(c.received) for c in self.conns)

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self.listener.close()


def ok(body: bytes = b"ok", extra: str = "") -> bytes:
    return (f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body
