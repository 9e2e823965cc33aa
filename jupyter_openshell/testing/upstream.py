"""Recording upstream servers on 127.0.0.1 (HTTP or HTTPS with a `TestCA` certificate).

`UpstreamServer` answers every request with a JSON echo {method, path, headers} and records it in
`.requests`; special paths: `/redirect?to=URL` (302), `/bytes/<n>` (n bytes, streamed), `/status/<code>`,
`/sleep/<ms>` (answers after ms).
`FakeOpenAI` adds OpenAI-compatible `GET /v1/models` and `POST /v1/chat/completions`, and
`/v1/echo-auth`, a deliberately leaky endpoint that reflects the Authorization header in a response
header and body (to prove that the proxy scrubs it).
They must never listen on anything but loopback.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    client: tuple[str, int]

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_values(self) -> list[str]:
        return [v for _, v in self.headers]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args) -> None:
        pass

    def _record(self) -> Recorded:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        rec = Recorded(self.command, self.path, list(self.headers.items()), body, self.client_address)
        with self.server.lock:
            self.server.requests.append(rec)
        return rec

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        for k, v in hdrs.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: object, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def handle_any(self) -> None:
        rec = self._record()
        url = urlsplit(self.path)
        if self.server.route(self, rec, url):
            return
        if url.path == "/redirect":
            target = parse_qs(url.query).get("to", ["/"])[0]
            self._send(302, b"", {"Location": target})
        elif url.path.startswith("/sleep/"):
            time.sleep(int(url.path.split("/")[2]) / 1000)
            self._json({"slept_ms": int(url.path.split("/")[2])})
        elif url.path.startswith("/status/"):
            self._send(int(url.path.split("/")[2]), b"{}")
        elif url.path.startswith("/bytes/"):
            n = int(url.path.split("/")[2])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            chunk = b"x" * 65536
            while n > 0:
                self.wfile.write(chunk[: min(n, len(chunk))])
                n -= len(chunk)
        else:
            self._json({"method": self.command, "path": self.path, "headers": rec.headers})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = handle_any


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: UpstreamServer, *args, **kwargs):
        self.owner = owner
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def route(self, handler: _Handler, rec: Recorded, url) -> bool:
        return self.owner.route(handler, rec, url)


class UpstreamServer:
    """A recording HTTP(S) server on 127.0.0.1 in a background thread. Use as a context manager."""

    def __init__(self, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1"):
        self._server = _Server(self, (host, 0), _Handler)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.tls = tls is not None
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def requests(self) -> list[Recorded]:
        with self._server.lock:
            return list(self._server.requests)

    def clear(self) -> None:
        with self._server.lock:
            self._server.requests.clear()

    def url(self, path: str = "/", host: str | None = None) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host or self.host}:{self.port}{path}"

    def route(self, handler: _Handler, rec: Recorded, url) -> bool:
        """Override to serve extra paths; return True when handled."""
        return False

    def start(self) -> UpstreamServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> UpstreamServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class FakeOpenAI(UpstreamServer):
    """An OpenAI-compatible backend that records what it receives (see module docstring)."""

    def __init__(self, tls: ssl.SSLContext | None = None, redirect_to: str | None = None):
        super().__init__(tls)
        self.redirect_to = redirect_to

    def route(self, handler: _Handler, rec: Recorded, url) -> bool:
        if url.path == "/v1/models":
            handler._json({"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0,
                                                      "owned_by": "openshell-test"}]})
        elif url.path == "/v1/chat/completions":
            req = json.loads(rec.body or b"{}")
            last = (req.get("messages") or [{}])[-1].get("content", "")
            handler._json({
                "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
                "model": req.get("model", "fake-model"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": f"echo: {last}"}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            })
        elif url.path == "/v1/echo-auth":
            auth = rec.header("Authorization") or ""
            handler._json({"you_sent": auth, "all": rec.headers}, headers={"X-Echo-Auth": auth})
        elif url.path == "/v1/redirect-out" and self.redirect_to:
            handler._send(302, b"", {"Location": self.redirect_to})
        else:
            return False
        return True
