"""Serve a connection accepted on a sandbox's channel with mitmproxy, bound to that sandbox first.

mitmproxy's server instance normally serves streams its own listener accepted, and names the client by
its peer address. Here the connection comes from the gateway (this process) or, in a worker, from the
primary over a private socket pair: the connection is registered in `ProxyState.channels` under
mitmproxy's own client id before mitmproxy sees a byte, and removed when it ends. The client's peer and
local addresses are placeholders (a UNIX socket has none); nothing may derive identity from them.
It must never serve a channel connection that is not bound to its sandbox.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from mitmproxy import ctx
from mitmproxy.proxy.mode_servers import ProxyConnectionHandler

from ._registry import SandboxEntry
from ._state import ProxyState

log = logging.getLogger(__name__)
_TASKS: set[asyncio.Task] = set()  # connections being served (asyncio keeps only weak references)
# What mitmproxy sees as the client's addresses (the agent's listener inside the sandbox).
CHANNEL_PEER = ("127.0.0.1", 0)
CHANNEL_SOCKNAME = ("127.0.0.1", 3128)


class _ChannelWriter:
    """A StreamWriter whose peer and local addresses are the channel placeholders."""

    def __init__(self, writer: asyncio.StreamWriter):
        self._writer = writer

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return CHANNEL_PEER
        if name == "sockname":
            return CHANNEL_SOCKNAME
        return self._writer.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


def _instance(master: Any) -> Any:
    """The proxy's one server instance (regular mode) that serves client connections."""
    for instance in master.addons.get("proxyserver").servers:
        return instance
    raise RuntimeError("the proxy has no server instance")


async def serve(master: Any, state: ProxyState, entry: SandboxEntry, sock: socket.socket) -> None:
    """Serve `sock` (an accepted channel connection) as sandbox `entry` until it closes."""
    try:
        reader, writer = await asyncio.open_connection(sock=sock)
    except OSError:
        sock.close()
        return
    instance = _instance(master)
    handler = ProxyConnectionHandler(master, reader, _ChannelWriter(writer), ctx.options, instance.mode)
    handler.layer = instance.make_top_layer(handler.layer.context)
    client_id = handler.layer.context.client.id
    state.channels[client_id] = entry  # bound before mitmproxy reads a byte
    try:
        with instance.manager.register_connection(client_id, handler):
            await handler.handle_client()
    finally:
        state.channels.pop(client_id, None)


def start(master: Any, state: ProxyState, entry: SandboxEntry, sock: socket.socket) -> None:
    """Serve `sock` as sandbox `entry` in the background (see `serve`)."""
    task = asyncio.ensure_future(serve(master, state, entry, sock))
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)
