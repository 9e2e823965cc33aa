"""Host side of `exec`: sends a command and the caller's stdio fds to a sandbox's agent and tracks it.

`RemoteProcess` is Popen-like (pid, poll, wait, communicate, send_signal, kill). With `peer_pid`, the
socket must belong to that process (a backend whose control socket lives where the sandbox could put
another one checks its agent this way before sending it anything). It must never copy
the command's output itself: the agent receives the caller's fds, the command writes to them.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import struct
import subprocess
import threading
import time

from . import _wire
from ._errors import KILL_GRACE_S, SandboxError

TYPE_CHECKING = False  # (not typing.TYPE_CHECKING: `openshell sandbox exec` does not import typing)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any


def _stdio(value: Any, index: int, to_close: list[int]) -> tuple[int, Any]:
    """(fd to send, parent-side file object or None) for one stdio argument."""
    if value is None:
        return index, None
    if value == subprocess.STDOUT:
        raise ValueError("subprocess.STDOUT is only valid for stderr")
    if value == subprocess.DEVNULL:
        fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        to_close.append(fd)
        return fd, None
    if value == subprocess.PIPE:
        r, w = os.pipe2(os.O_CLOEXEC)
        child, parent = (r, w) if index == 0 else (w, r)
        to_close.append(child)
        return child, os.fdopen(parent, "wb" if index == 0 else "rb", buffering=0)
    if isinstance(value, int):
        return value, None
    return value.fileno(), None


def _peer_pid(sock: socket.socket) -> int:
    """The pid (in our namespace) of the process that made the listening socket `sock` reached."""
    cred = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", cred)[0]


class RemoteProcess:
    def __init__(
        self,
        control_path: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None,
        cwd: str | None,
        stdin: Any,
        stdout: Any,
        stderr: Any,
        sandbox: str,
        peer_pid: int | None = None,
    ) -> None:
        self.args = list(argv)
        self.pid: int | None = None
        self.returncode: int | None = None
        self.sandbox = sandbox
        self._lock = threading.Lock()
        to_close: list[int] = []
        try:
            fds, pipes = [], []
            for index, value in enumerate((stdin, stdout, stderr)):
                if index == 2 and value == subprocess.STDOUT:  # the same fd as stdout, as Popen does
                    fd, pipe = fds[1], None
                else:
                    fd, pipe = _stdio(value, index, to_close)
                fds.append(fd)
                pipes.append(pipe)
            self.stdin, self.stdout, self.stderr = pipes
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self._sock.connect(control_path)
            except OSError as exc:
                self._sock.close()
                raise SandboxError(
                    f"sandbox {sandbox} is not running (its agent does not answer: {exc.strerror}); "
                    f"see `openshell sandbox logs {sandbox}`, "
                    f"or remove it with `openshell sandbox rm {sandbox}`"
                ) from exc
            if peer_pid is not None and _peer_pid(self._sock) != peer_pid:
                self._sock.close()  # someone else's socket at the agent's path: send it nothing
                raise SandboxError(
                    f"sandbox {sandbox}: the process at its control socket is not its agent; "
                    f"remove the sandbox with `openshell sandbox rm {sandbox}`"
                )
            _wire.send_request(self._sock, {"argv": self.args, "env": dict(env or {}), "cwd": cwd}, fds)
        finally:
            for fd in to_close:
                os.close(fd)
        self._reader = _wire.ReplyReader(self._sock)
        try:
            first = self._read(KILL_GRACE_S)
        except TimeoutError:  # the command stopped its agent before it said the pid: pid stays unknown
            return
        if first is None:
            self._finish(-signal.SIGKILL)
        elif "pid" in first:
            self.pid = int(first["pid"])
        else:
            self._finish(int(first.get("exit", 127)))

    def _read(self, timeout: float | None) -> dict | None:
        if not self._reader.buffered():
            ready, _, _ = select.select([self._sock], [], [], timeout)
            if not ready:
                raise TimeoutError
        try:
            return self._reader.read()
        except (OSError, ValueError):
            return None

    def _finish(self, code: int) -> int:
        self.returncode = code
        with contextlib.suppress(OSError):
            self._sock.close()
        return code

    def poll(self) -> int | None:
        if self.returncode is None:
            with self._lock:
                if self.returncode is None:
                    try:
                        self._wait_locked(0)
                    except TimeoutError:
                        return None
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        with self._lock:
            if self.returncode is None:
                try:
                    self._wait_locked(timeout)
                except TimeoutError:
                    raise subprocess.TimeoutExpired(self.args, timeout) from None
        assert self.returncode is not None
        return self.returncode

    def _wait_locked(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            message = self._read(left)
            if message is None:  # the sandbox went away under the command
                self._finish(-signal.SIGKILL)
            elif "exit" in message:
                self._finish(int(message["exit"]))
            elif "pid" in message and self.pid is None:  # late: its agent was stopped for a while
                self.pid = int(message["pid"])

    def communicate(self, input: bytes | None = None, timeout: float | None = None) -> tuple[Any, Any]:
        results: dict[str, bytes] = {}

        def drain(name: str, pipe: Any) -> None:
            results[name] = pipe.read() if pipe else None
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

    def send_signal(self, sig: int) -> None:
        """Deliver `sig` to the command's process group inside the sandbox."""
        if self.returncode is None:
            with contextlib.suppress(OSError):
                _wire.send_signal(self._sock, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def abandon(self) -> None:
        """Stop waiting for a command whose agent does not answer (code inside can SIGSTOP its own
        agent): the connection is closed, returncode becomes -SIGKILL, and the command is left to the
        sandbox's teardown. Pipes still being read by another thread are left to close with it."""
        if self.returncode is None:
            self._finish(-signal.SIGKILL)

    def __enter__(self) -> RemoteProcess:
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
