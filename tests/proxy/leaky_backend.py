"""A malicious inference backend for the scrubber's attack tests: it echoes the credential it was sent
(`Authorization: Bearer <key>`) back in a chosen spelling, place, framing and content coding, written
byte by byte on a raw socket so the framing is exactly what the test asked for. It also serves normal
OpenAI-style chat completions (JSON and SSE streaming) that hold no key. Loopback only.

GET /leak?form=F&frame=cl|chunked|close|sse|big|bigcl&coding=C&where=body|header|setcookie|location|
wwwauth|trailer|upgrade (a 101, then the key as raw bytes)
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import socket
import threading
import time
import zlib
from urllib.parse import parse_qs, quote, urlsplit

import brotli
import zstandard


def forms(key: str) -> dict[str, str]:
    """Every spelling of `key` the scrubber promises to find."""
    k = key.encode()
    out = {
        "raw": key,
        "upper": key.upper(),
        "json_slash": json.dumps(key)[1:-1].replace("/", "\\/"),
        "json_u": "".join(f"\\u{ord(c):04x}" for c in key),
        "json_u_upper": "".join(f"\\u{ord(c):04X}" for c in key),
        "json_u_some": "".join(f"\\u{ord(c):04x}" if i % 3 == 0 else c for i, c in enumerate(key)),
        "js_x": "".join(f"\\x{ord(c):02x}" for c in key),
        "pct": quote(key, safe=""),
        "pct_lowerhex": "".join(f"%{b:02x}" if not chr(b).isalnum() else chr(b) for b in k),
        "pct_all": "".join(f"%{b:02X}" for b in k),
        "pct_double": quote(quote(key, safe=""), safe=""),
        "pct_double_all": "".join(f"%25{b:02X}" for b in k),
        "html_dec": "".join(f"&#{ord(c)};" for c in key),
        "html_dec_zeros": "".join(f"&#00{ord(c)};" for c in key),
        "html_hex": "".join(f"&#x{ord(c):X};" for c in key),
        "html_named": html.escape(key).replace("/", "&sol;").replace("+", "&plus;").replace("=", "&equals;"),
        "html_double": html.escape("".join(f"&#{ord(c)};" for c in key)),
        "hex": k.hex(),
        "hex_upper": k.hex().upper(),
        "b64_of_pct": base64.b64encode(quote(key, safe="").encode()).decode(),
    }
    for name, prefix in (("", ""), ("1", "x"), ("2", "xy"), ("bearer", "Bearer "), ("basic", "user:"),
                         ("json", '{"authorization":"Bearer ')):
        b64 = base64.b64encode(prefix.encode() + k).decode()
        out[f"b64{name}"] = b64
        out[f"b64url{name}"] = base64.urlsafe_b64encode(prefix.encode() + k).decode().rstrip("=")
        out[f"b64{name}_json"] = b64.replace("/", "\\/")
        out[f"b64{name}_pct"] = quote(b64, safe="")
    return out


def encode(body: bytes, coding: str) -> bytes:
    for c in [c.strip() for c in coding.split(",") if c.strip()]:
        body = {"identity": lambda b: b, "gzip": gzip.compress, "x-gzip": gzip.compress,
                "deflate": zlib.compress, "rawdeflate": lambda b: zlib.compress(b)[2:-4],
                "br": brotli.compress, "zstd": zstandard.ZstdCompressor().compress,
                "x-unknown": lambda b: b[::-1]}[c](body)
    return body


def _coding_header(coding: str) -> str:
    return ", ".join("deflate" if c.strip() == "rawdeflate" else c.strip() for c in coding.split(","))


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


CHAT_EVENTS = [{"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
               for word in ["Hello", " world", ",", " 50%", " & \\u00e9 \"q\" a/b"]]


class LeakyBackend:
    """Threaded raw HTTP/1.1 server on 127.0.0.1."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seen: list[dict] = []
        self._stop = False

    def __enter__(self) -> LeakyBackend:
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop = True
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(conn,), daemon=True).start()

    def _conn(self, conn: socket.socket) -> None:
        try:
            f = conn.makefile("rb")
            while True:
                line = f.readline()
                if not line:
                    return
                method, target, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                pairs = []
                while (h := f.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = h.decode("latin-1").partition(":")
                    pairs.append((name.strip(), value.strip()))
                    headers.setdefault(name.strip().lower(), value.strip())
                body = f.read(int(headers.get("content-length") or 0))
                self.seen.append({"method": method, "target": target, "headers": headers, "pairs": pairs})
                if not self._answer(conn, method, target, headers, body):
                    return
        except (OSError, ValueError):
            pass
        finally:
            conn.close()

    def _answer(self, conn, method, target, headers, body) -> bool:
        url = urlsplit(target)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        key = headers.get("authorization", "").removeprefix("Bearer ") or q.get("key", "")
        if url.path.endswith("/chat/completions"):
            return self._chat(conn, json.loads(body or b"{}"))
        form = forms(key)[q.get("form", "raw")] if key else "nothing"
        frame, coding, where = q.get("frame", "cl"), q.get("coding", "identity"), q.get("where", "body")
        status = "200 OK"
        extra = [("Content-Type", "text/event-stream" if frame == "sse" else "application/json")]
        payload = '{"error": {"message": "Incorrect API key provided: %s", "code": 401}}' % (
            form if where == "body" else "")
        if where == "upgrade":
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\n\r\n" + form.encode())
            time.sleep(0.5)
            return False
        if where == "header":
            extra.append(("X-Echo", form))
        elif where == "setcookie":
            extra.append(("Set-Cookie", f"s={form}; Path=/"))
        elif where == "location":
            status = "302 Found"
            extra.append(("Location", f"https://elsewhere.test/cb?k={form}"))
        elif where == "wwwauth":
            status = "401 Unauthorized"
            extra.append(("WWW-Authenticate", f'Bearer error="invalid_token", error_description="{form}"'))
        data = payload.encode()
        if frame == "sse":
            data = b"".join(b"data: %s\n\n" % json.dumps(e).encode() for e in CHAT_EVENTS) + b"data: " + data
            data += b"\n\ndata: [DONE]\n\n"
        elif frame in ("big", "bigcl"):
            data = b" " * (300 * 1024) + data + b" " * 1000
        data = encode(data, coding)
        if coding != "identity":
            extra.append(("Content-Encoding", _coding_header(coding)))
        head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in extra)
        if frame in ("cl", "bigcl"):
            conn.sendall((head + f"Content-Length: {len(data)}\r\n\r\n").encode("latin-1") + data)
            return True
        if frame == "close":
            conn.sendall((head + "Connection: close\r\n\r\n").encode("latin-1"))
            for i in range(0, len(data), 5):
                conn.sendall(data[i:i + 5])
            return False
        trailer = where == "trailer"
        conn.sendall((head + "Transfer-Encoding: chunked\r\n" + ("Trailer: X-Trailer\r\n" if trailer else "")
                      + "\r\n").encode("latin-1"))
        step = 7 if frame in ("chunked", "sse") else 65536
        for i in range(0, len(data), step):
            conn.sendall(_chunk(data[i:i + step]))
            if frame == "sse":
                time.sleep(0.001)
        conn.sendall(b"0\r\n" + (f"X-Trailer: {form}\r\n".encode() if trailer else b"") + b"\r\n")
        return True

    def _chat(self, conn, req: dict) -> bool:
        if not req.get("stream"):
            message = {"role": "assistant", "content": "Hello world, 50% & \\u00e9 a/b"}
            choice = {"index": 0, "finish_reason": "stop", "message": message}
            data = json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
                               "choices": [choice]}).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(data), data))
            return True
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        for event in [*CHAT_EVENTS, "[DONE]"]:
            text = event if isinstance(event, str) else json.dumps(event)
            conn.sendall(_chunk(f"data: {text}\n\n".encode()))
            time.sleep(0.002)
        conn.sendall(b"0\r\n\r\n")
        return True
