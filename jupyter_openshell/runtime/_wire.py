"""The exec protocol between the host and the in-sandbox agent (stdlib only; imported on both sides).

Over one UNIX stream connection per command:
  host -> agent  frames: 4-byte big-endian length + `marshal` data. The first frame is the request
                 {"argv", "env", "cwd"} and carries the caller's stdin/stdout/stderr as SCM_RIGHTS
                 (so output streams with no copying); later frames are {"signal": N} (delivered to
                 the command's process group). marshal, because the agent must start fast (no json,
                 no re) and only the host can reach the agent's control socket.
  agent -> host  JSON lines: {"pid": N} once started, then {"exit": code} (negative: killed by that
                 signal) or {"error": message, "exit": code}. The host parses these with `json` only:
                 what comes from inside a sandbox is never unmarshalled.
Closing the connection before the exit line kills the command's process group.
It must never carry anything but these frames: no secrets of the host, no paths of the host.
"""

from __future__ import annotations

import _socket as socket  # (not socket, nor array: their imports cost the agent's start-up time)
import marshal
import os
import struct

MAX_FRAME = 1 << 20
MAX_FDS = 3


def _frame(message: dict) -> bytes:
    body = marshal.dumps(message)
    return struct.pack("!I", len(body)) + body


# --- host side ---------------------------------------------------------------------------------
def send_request(sock: socket.socket, request: dict, fds: list[int]) -> None:
    frame = _frame(request)
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))] if fds else []
    sent = sock.sendmsg([frame], anc)
    if sent < len(frame):
        sock.sendall(frame[sent:])


def send_signal(sock: socket.socket, sig: int) -> None:
    sock.sendall(_frame({"signal": int(sig)}))


class ReplyReader:
    """Reads the agent's newline-delimited JSON replies."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = b""

    def read(self) -> dict | None:
        """The next reply, or None at end of stream (blocks per the socket's timeout)."""
        import json

        while b"\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        message = json.loads(line)
        return message if isinstance(message, dict) else None

    def buffered(self) -> bool:
        return b"\n" in self._buf


# --- agent side --------------------------------------------------------------------------------
def _recv_exact(sock: socket.socket, size: int, head: bytes = b"") -> bytes:
    data = bytearray(head)
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ValueError("connection closed inside a frame")
        data += chunk
    return bytes(data)


def recv_request(sock: socket.socket) -> tuple[dict, list[int]]:
    """The request frame and the fds that came with it (close-on-exec; the caller must close them)."""
    size = struct.calcsize("i")
    fds: list[int] = []
    data, anc, _flags, _addr = sock.recvmsg(65536, socket.CMSG_SPACE(MAX_FDS * size), socket.MSG_CMSG_CLOEXEC)
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            count = len(payload) // size
            fds.extend(struct.unpack(f"{count}i", payload[: count * size]))
    try:
        data = _recv_exact(sock, 4, data) if len(data) < 4 else data
        (size,) = struct.unpack("!I", data[:4])
        if size > MAX_FRAME:
            raise ValueError("request frame too large")
        return marshal.loads(_recv_exact(sock, size, data[4:])), fds
    except Exception:
        for fd in fds:
            os.close(fd)
        raise


def recv_frame(sock: socket.socket) -> dict | None:
    """The next host frame after the request, None at end of stream."""
    try:
        head = sock.recv(4)
        if not head:
            return None
        (size,) = struct.unpack("!I", _recv_exact(sock, 4, head))
        if size > MAX_FRAME:
            return None
        return marshal.loads(_recv_exact(sock, size))
    except (OSError, ValueError, EOFError):
        return None


def _escape(c: str) -> str:
    if c.isprintable() and c not in '"\\':
        return c
    return f"\\u{ord(c):04x}" if ord(c) < 0x10000 else "?"


def reply(sock: socket.socket, **fields: int | str) -> None:
    """One JSON reply line (ints and strings only: written without the json module)."""
    parts = []
    for key, value in fields.items():
        if isinstance(value, int):
            parts.append(f'"{key}": {int(value)}')
        else:
            text = "".join(_escape(c) for c in str(value))
            parts.append(f'"{key}": "{text}"')
    sock.sendall(("{" + ", ".join(parts) + "}\n").encode())
