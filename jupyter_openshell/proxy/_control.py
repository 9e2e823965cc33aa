"""The control API server: HTTP/1.1 + JSON over a UNIX socket (`<state>/run/proxy-control.sock`).

Routes (all answer JSON; errors are {"error": "..."} with 4xx/5xx):
  GET    /status                         process, listener, policies (version, last error), sandboxes
  POST   /sandboxes/<name>               register <name>: {created, policy_file, channel: {kind: "unix",
                                         socket}} (opens its gateway socket)
  DELETE /sandboxes/<name>               unregister it
  GET    /flows?after=&since=&limit=&sandbox=&created=
                                         flow records, oldest first, and the next cursor (`seq`)
  POST   /reload                         re-read every policy file now
  POST   /shutdown                       stop the proxy
The socket is created 0600 inside the 0700 state directory. This module only parses and dispatches:
it must never decide policy itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

log = logging.getLogger(__name__)

Handler = Callable[[str, str, dict[str, str], Any], Awaitable[tuple[int, Any]]]
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
            500: "Internal Server Error"}
_MAX_BODY = 1 << 20


class ControlServer:
    """Serves `handler(method, path, query, body) -> (status, json_obj)` on a UNIX socket."""

    def __init__(self, path: Path, handler: Handler):
        self.path = path
        self.handler = handler
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old = os.umask(0o077)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, payload = await self._one(reader)
        except Exception as exc:  # answer, never crash the proxy
            log.exception("control API request failed")
            status, payload = 500, {"error": f"{type(exc).__name__}: {exc}"}
        body = json.dumps(payload, default=str).encode()
        head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        try:
            writer.write(head + body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader) -> tuple[int, Any]:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return 400, {"error": "incomplete request"}
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, _ = lines[0].split(" ", 2)
        except ValueError:
            return 400, {"error": "bad request line"}
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0") or 0)
        if length > _MAX_BODY:
            return 400, {"error": "body too large"}
        raw = await reader.readexactly(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return 400, {"error": "body is not JSON"}
        url = urlsplit(target)
        query = dict(parse_qsl(url.query))
        return await self.handler(method.upper(), unquote(url.path), query, body)
