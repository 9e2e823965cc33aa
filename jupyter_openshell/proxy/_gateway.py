"""The sandbox gateway: one UNIX listener per registered sandbox at `<chan>/proxy.sock`, relaying each
connection to the proxy's TCP listener from the sandbox's own source address (its identity).

The socket is the only way out of a sandbox's network namespace; the relay binds the sandbox's
127.77.X.Y address before connecting, so the proxy sees which sandbox is speaking. It must never relay
to anything but the proxy listener, and never bind an address that is not the sandbox's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from pathlib import Path

log = logging.getLogger(__name__)
SOCKET_NAME = "proxy.sock"
_CHUNK = 1 << 16


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


class Gateway:
    def __init__(self, target: tuple[str, int]):
        self.target = target
        self._servers: dict[str, tuple[asyncio.AbstractServer, Path, str, int]] = {}

    async def open(self, name: str, chan_dir: Path, address: str) -> Path:
        """Listen for sandbox `name` on `<chan_dir>/proxy.sock` (replacing an earlier listener)."""
        await self.close(name)
        chan_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        path = chan_dir / SOCKET_NAME
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection(
                    *self.target, local_addr=(address, 0), family=socket.AF_INET)
            except OSError as exc:
                log.warning("gateway %s: cannot reach the proxy at %s:%s: %s", name, *self.target, exc)
                writer.close()
                return
            sock = up_writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
            finally:
                for w in (up_writer, writer):
                    w.close()

        server = await asyncio.start_unix_server(relay, path=str(path))
        # The sandbox user (any uid inside its user namespace) must be able to connect; the directory
        # is private to the sandbox and the state dir is 0700 on the host.
        os.chmod(path, 0o666)
        self._servers[name] = (server, path, address, os.stat(path).st_ino)
        log.info("gateway %s: %s -> %s:%s from %s", name, path, *self.target, address)
        return path

    def serves(self, name: str, chan_dir: Path, address: str) -> bool:
        """True if `name`'s listener is at `<chan_dir>/proxy.sock`, relays from `address`, and that
        path is still our socket (a recreated sandbox has a new channel directory)."""
        item = self._servers.get(name)
        if item is None:
            return False
        _, path, addr, ino = item
        if path != chan_dir / SOCKET_NAME or addr != address:
            return False
        try:
            return os.stat(path).st_ino == ino
        except OSError:
            return False

    async def close(self, name: str) -> None:
        item = self._servers.pop(name, None)
        if item is None:
            return
        server, path, _, ino = item
        server.close()
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == ino:  # never unlink a newer listener's socket
                path.unlink()

    async def close_all(self) -> None:
        for name in list(self._servers):
            await self.close(name)

    def listening(self) -> dict[str, str]:
        return {name: str(item[1]) for name, item in self._servers.items()}
