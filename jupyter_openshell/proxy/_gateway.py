"""The sandbox gateway: one UNIX listener per registered sandbox, at the socket its registration names.

That socket is the only way out of a sandbox's network namespace and is bound into that sandbox alone,
so a connection accepted on it is that sandbox's: the gateway hands it, with the registration it came
through, to `dispatch` (which serves it in this process or passes it to a worker), never through a
network address another local process could take. It must never accept for one sandbox on another's
listener, and never hand on a connection without its registration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path

from ._registry import SandboxEntry

log = logging.getLogger(__name__)
Dispatch = Callable[[SandboxEntry, socket.socket], None]
BACKLOG = 128


class _Listener:
    def __init__(self, entry: SandboxEntry, sock: socket.socket):
        self.entry, self.sock = entry, sock
        self.inode = os.stat(entry.socket).st_ino


class Gateway:
    def __init__(self, dispatch: Dispatch):
        self.dispatch = dispatch
        self._listeners: dict[str, _Listener] = {}

    async def open(self, entry: SandboxEntry) -> Path:
        """Listen for sandbox `entry.name` on `entry.socket` (replacing an earlier listener)."""
        await self.close(entry.name)
        path = entry.socket
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                raise OSError(f"{path} exists and is not a socket; refusing to replace it")
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
            # Any uid inside the sandbox's user namespace must be able to connect; the directory is the
            # sandbox's own channel, never visible to another sandbox.
            os.chmod(path, 0o666)
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        listener = self._listeners[entry.name] = _Listener(entry, sock)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._accept, listener)
        log.info("gateway %s: listening on %s", entry.name, path)
        return path

    def _accept(self, listener: _Listener) -> None:
        while True:
            try:
                conn, _ = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: leave the rest in the backlog until fds are free
                log.warning("gateway %s: accept failed: %s", listener.entry.name, exc)
                return
            conn.setblocking(False)
            try:
                self.dispatch(listener.entry, conn)
            except Exception:
                log.exception("gateway %s: could not hand a connection on", listener.entry.name)
                conn.close()

    def serves(self, entry: SandboxEntry) -> bool:
        """True if `entry`'s listener is open for exactly this registration and its path is still ours."""
        listener = self._listeners.get(entry.name)
        if listener is None or listener.entry != entry:
            return False
        try:
            return os.stat(entry.socket).st_ino == listener.inode
        except OSError:
            return False

    async def close(self, name: str) -> None:
        listener = self._listeners.pop(name, None)
        if listener is None:
            return
        asyncio.get_running_loop().remove_reader(listener.sock.fileno())
        listener.sock.close()
        with contextlib.suppress(OSError):
            if os.stat(listener.entry.socket).st_ino == listener.inode:  # never a newer listener's socket
                listener.entry.socket.unlink()

    async def close_all(self) -> None:
        for name in list(self._listeners):
            await self.close(name)

    def listening(self) -> dict[str, str]:
        return {name: str(item.entry.socket) for name, item in self._listeners.items()}
