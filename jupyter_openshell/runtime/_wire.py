"""The exec protocol between the host and the in-sandbox agent (stdlib only; imported on both sides).

Over one UNIX stream connection per command:
  host -> agent  a request frame: 4-byte big-endian length + JSON {"argv", "env", "cwd"}, carrying
                 the caller's stdin/stdout/stderr as SCM_RIGHTS (so output streams with no copying);
  agent -> host  JSON lines: {"pid": N} once started, then {"exit": code} (negative: killed by
                 that signal) or {"error": message};
  host -> agent  JSON lines {"signal": N} at any time (delivered to the command's process group).
Closing the connection before the exit line kills the command's process group.
It must never carry anything but these frames: no secrets, no paths of the host.
"""

from __future__ import annotations

import array
import json
import os
import socket
import struct

MAX_FRAME = 1 << 20
MAX_FDS = 3


def send_request(sock: socket.socket, request: dict, fds: list[int]) -> None:
    body = json.dumps(request).encode()
    frame = struct.pack("!I", len(body)) + body
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sent = sock.sendmsg([frame], anc)
    if sent < len(frame):
        sock.sendall(frame[sent:])


def recv_request(sock: socket.socket) -> tuple[dict, list[int]]:
    """One request frame and the fds that came with it (the caller owns and must close them)."""
    fds = array.array("i")
    data, anc, _flags, _addr = sock.recvmsg(65536, socket.CMSG_SPACE(MAX_FDS * fds.itemsize))
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    try:
        if len(data) < 4:
            raise ValueError("short request frame")
        (size,) = struct.unpack("!I", data[:4])
        if size > MAX_FRAME:
            raise ValueError("request frame too large")
        body = bytearray(data[4:])
        while len(body) < size:
            chunk = sock.recv(size - len(body))
            if not chunk:
                raise ValueError("connection closed inside a request frame")
            body += chunk
        return json.loads(body), list(fds)
    except Exception:
        for fd in fds:
            _close(fd)
        raise


def send_line(sock: socket.socket, message: dict) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


class LineReader:
    """Reads newline-delimited JSON messages from a stream socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = b""

    def read(self) -> dict | None:
        """The next message, or None at end of stream (blocks per the socket's timeout)."""
        while b"\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def buffered(self) -> bool:
        return b"\n" in self._buf


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
