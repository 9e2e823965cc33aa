"""Host side of `exec` on a sandbox pod: the Kubernetes exec API (a WebSocket, authenticated and
authorised by the API server) carrying `_launcher`'s framed protocol.

`PodProcess` is Popen-like like the local `RemoteProcess` (args, pid in the pod, poll, wait, communicate,
send_signal to the command's process group, terminate, kill, abandon, returncode negative for a signal,
stdin/stdout/stderr with PIPE, DEVNULL, STDOUT, an fd or a file). What differs from the local backend:
output is copied (the API carries bytes, not file descriptors), and `response(timeout)` returns what the
command wrote to its response pipe ($OPENSHELL_RESPONSE_FD, when `env` asks for one). The command's
arguments travel in the exec stream, never in the request URL. It must never block forever on a pod that
stopped answering, and never write a secret to a log.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import struct
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._types import KILL_GRACE_S
from . import _launcher

_HEAD = struct.Struct(">cI")
RESPONSE_ENV = "OPENSHELL_RESPONSE_FD"  # in `env` (any value): the command gets a response pipe
_SOURCE = Path(_launcher.__file__).read_bytes()
COMMAND = ["python3", "-I", "-S", "-B", "-c", _launcher.BOOT]


class WebSocketChannels:
    """The exec stream of the Kubernetes client (`kubernetes.stream`): channel 0 in, 1/2/3 out."""

    def __init__(self, ws: Any):
        self.ws = ws
        self._lock = threading.Lock()

    def send(self, data: bytes) -> None:
        from websocket import ABNF

        with self._lock:
            self.ws.sock.send(b"\x00" + data, opcode=ABNF.OPCODE_BINARY)

    def recv(self) -> tuple[int, bytes] | None:
        from websocket import ABNF

        try:
            opcode, frame = self.ws.sock.recv_data_frame(True)
        except Exception:  # closed, reset, or a protocol error: the stream is over
            return None
        if opcode == ABNF.OPCODE_CLOSE:
            return None
        data = frame.data if isinstance(frame.data, bytes) else frame.data.encode()
        return (data[0], data[1:]) if data else (-1, b"")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()


def _frame(kind: bytes, payload: bytes = b"") -> bytes:
    return _HEAD.pack(kind, len(payload)) + payload


def _sink(value: Any, default_fd: int, owned: list[int]) -> tuple[str, int | None, Any]:
    """(mode for the launcher, fd we write the output to, the PIPE's file for the caller)."""
    if value == subprocess.DEVNULL:
        return "null", None, None
    if value == subprocess.PIPE:
        r, w = os.pipe()
        owned.append(w)
        return "pipe", w, os.fdopen(r, "rb")
    fd = os.dup(default_fd if value is None else value if isinstance(value, int) else value.fileno())
    owned.append(fd)
    return "pipe", fd, None


def _source(value: Any, owned: list[int]) -> tuple[str, int | None, Any]:
    """(mode for the launcher, fd we read stdin from, the PIPE's file for the caller)."""
    if value == subprocess.DEVNULL:
        return "null", None, None
    if value == subprocess.PIPE:
        r, w = os.pipe()
        owned.append(r)
        return "pipe", r, os.fdopen(w, "wb")
    fd = os.dup(0 if value is None else value if isinstance(value, int) else value.fileno())
    owned.append(fd)
    return "pipe", fd, None


def _write_all(fd: int | None, data: bytes) -> None:
    if fd is None:
        return
    with contextlib.suppress(OSError):
        while data:
            data = data[os.write(fd, data) :]


class PodProcess:
    def __init__(
        self,
        channels: Any,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None,
        cwd: str | None,
        stdin: Any,
        stdout: Any,
        stderr: Any,
        sandbox: str,
        rlimits: Mapping[str, int] | None = None,
    ):
        self.args = list(argv)
        self.pid: int | None = None
        self.returncode: int | None = None
        self.sandbox = sandbox
        self._ch = channels
        self._done = threading.Event()
        self._started = threading.Event()
        self._responses: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._launcher_err = b""
        self._status: dict | None = None
        self._owned: list[int] = []
        out_mode, self._out_fd, self.stdout = _sink(stdout, 1, self._owned)
        if stderr == subprocess.STDOUT:
            err_mode, self._err_fd, self.stderr = ("stdout" if out_mode == "pipe" else "null"), None, None
        else:
            err_mode, self._err_fd, self.stderr = _sink(stderr, 2, self._owned)
        in_mode, in_fd, self.stdin = _source(stdin, self._owned)
        env = dict(env or {})
        response = env.pop(RESPONSE_ENV, None) is not None
        config = {
            "argv": self.args,
            "env": env,
            "cwd": cwd,
            "stdin": in_mode,
            "stdout": out_mode,
            "stderr": err_mode,
            "rlimits": dict(rlimits or {}),
            "response": response,
        }
        try:
            self._ch.send(
                f"{len(_SOURCE):010d}".encode() + _SOURCE + _frame(b"c", json.dumps(config).encode())
            )
        except Exception:
            self._finish(-signal.SIGKILL)
            self._close_owned()
            raise
        threading.Thread(target=self._read, name=f"openshell-exec-{sandbox}", daemon=True).start()
        if in_fd is not None:
            threading.Thread(target=self._feed, args=(in_fd,), daemon=True).start()
        self._started.wait(KILL_GRACE_S)  # a late pid is taken while waiting

    # -- the stream ---------------------------------------------------------------------------------------
    def _read(self) -> None:
        buf = b""
        try:
            while (item := self._ch.recv()) is not None:
                channel, data = item
                if channel == 1:
                    buf += data
                    while len(buf) >= _HEAD.size:
                        kind, n = _HEAD.unpack_from(buf)
                        if len(buf) < _HEAD.size + n:
                            break
                        self._frame(kind, buf[_HEAD.size : _HEAD.size + n])
                        buf = buf[_HEAD.size + n :]
                elif channel == 2:
                    self._launcher_err = (self._launcher_err + data)[-8192:]
                elif channel == 3:
                    with contextlib.suppress(ValueError):
                        self._status = json.loads(data)
        finally:
            if self.returncode is None:
                self._finish(self._exit_from_status())
            self._close_owned()
            self._started.set()

    def _frame(self, kind: bytes, payload: bytes) -> None:
        if kind == b"o":
            _write_all(self._out_fd, payload)
        elif kind == b"r":
            _write_all(self._err_fd, payload)
        elif kind == b"p":
            self.pid = int(payload)
            self._started.set()
        elif kind == b"a":
            self._responses.put(payload)
        elif kind == b"E":
            _write_all(
                self._err_fd if self._err_fd is not None else self._out_fd, b"openshell: " + payload + b"\n"
            )
        elif kind == b"x":
            status = json.loads(payload)
            self._finish(-int(status["signal"]) if "signal" in status else int(status["exit"]))
            self._started.set()

    def _exit_from_status(self) -> int:
        """The stream ended without the launcher's exit frame: the pod's answer on the status channel,
        else the command is taken as killed (the sandbox went away under it)."""
        status = self._status or {}
        if status.get("status") == "Success":
            return 0
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                with contextlib.suppress(ValueError):
                    return int(cause["message"])
        return -signal.SIGKILL

    def _feed(self, fd: int) -> None:
        try:
            while not self._done.is_set() and (data := os.read(fd, 65536)):
                self._ch.send(_frame(b"i", data))
            self._ch.send(_frame(b"e"))
        except (OSError, Exception):  # the stream or the caller's fd went away
            pass

    def _finish(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
        self._done.set()

    def _close_owned(self) -> None:
        owned, self._owned = self._owned, []
        for fd in owned:
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- Popen-like ---------------------------------------------------------------------------------------
    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        assert self.returncode is not None
        return self.returncode

    def communicate(self, input: bytes | None = None, timeout: float | None = None) -> tuple[Any, Any]:
        results: dict[str, bytes | None] = {}

        def drain(name: str, pipe: Any) -> None:
            results[name] = pipe.read()
            pipe.close()

        threads = [
            threading.Thread(target=drain, args=(n, p), daemon=True)
            for n, p in (("out", self.stdout), ("err", self.stderr))
            if p is not None
        ]
        for t in threads:
            t.start()
        if self.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                if input:
                    self.stdin.write(input)
            self.stdin.close()
        self.wait(timeout)
        for t in threads:
            t.join(timeout)
        return results.get("out"), results.get("err")

    def response(self, timeout: float | None = None) -> bytes | None:
        """The next chunk the command wrote to its response pipe (None: nothing within `timeout`)."""
        try:
            return self._responses.get(timeout=timeout)
        except queue.Empty:
            return None

    def send_signal(self, sig: int) -> None:
        """Deliver `sig` to the command's process group in the pod."""
        if self.returncode is None:
            with contextlib.suppress(Exception):
                self._ch.send(_frame(b"s", str(int(sig)).encode()))

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def abandon(self) -> None:
        """Stop waiting for a command whose pod does not answer: the stream is closed (the launcher then
        kills the command), returncode becomes -SIGKILL."""
        if self.returncode is None:
            self._finish(-signal.SIGKILL)
            self._ch.close()

    def launcher_errors(self) -> str:
        return self._launcher_err.decode(errors="replace")

    def __enter__(self) -> PodProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        for pipe in (self.stdin, self.stdout, self.stderr):
            if pipe is not None:
                pipe.close()
        if self.returncode is None:
            self.kill()
            try:
                self.wait(KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                self.abandon()
