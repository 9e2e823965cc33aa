"""The demo's local upstream: a tiny data API and a fake OpenAI-compatible chat endpoint on 127.0.0.2.

Everything the demo notebook talks to runs here, offline. The chat endpoint answers only requests that carry
the demo secret as a bearer token (which the policy proxy injects), so the demo shows that the notebook's
code never holds the key. It must never listen on anything but a loopback address.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.2"
PORT = 8765


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args) -> None:
        pass

    def _json(self, status: int, obj: object) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/data"):
            self._json(200, {"rows": [{"city": "Lyon", "temp_c": 21}, {"city": "Oslo", "temp_c": 9}]})
        elif self.path.startswith("/v1/models"):
            self._json(
                200, {"object": "list", "data": [{"id": "demo", "object": "model", "owned_by": "openshell"}]}
            )
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length)
        if self.path.startswith("/upload"):
            self._json(200, {"stored_bytes": len(data)})
        elif self.path.startswith("/v1/chat/completions"):
            if self.headers.get("Authorization") != f"Bearer {self.server.key}":
                self._json(
                    401, {"error": {"message": "missing or wrong API key", "type": "invalid_request_error"}}
                )
                return
            prompt = json.loads(data or b"{}").get("messages", [{}])[-1].get("content", "")
            self._json(
                200,
                {
                    "id": "chatcmpl-demo",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": "demo",
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {
                                "role": "assistant",
                                "content": f"Hello from the local fake LLM! You said: {prompt!r}. "
                                "The proxy added the key.",
                            },
                        }
                    ],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 12, "total_tokens": 17},
                },
            )
        else:
            self._json(404, {"error": "not found"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    key = ""


class DemoUpstream:
    """Start with `.start()`, stop with `.stop()`; `key` is the bearer token the chat endpoint requires."""

    def __init__(self, key: str, host: str = HOST, port: int = PORT):
        self.server = _Server((host, port), _Handler)
        self.server.key = key
        self.url = f"http://{host}:{self.server.server_address[1]}"

    def start(self) -> DemoUpstream:
        threading.Thread(target=self.server.serve_forever, name="demo-upstream", daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
