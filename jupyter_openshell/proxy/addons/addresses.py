"""Post-allow address check: after a request is allowed, its destination name is resolved once per
client connection and destination, every answer is checked (see `_addresses`), and mitmproxy dials
exactly the address that passed: `server_connect` swaps the checked IP into the server address and
`server_connected` puts the name back (so SNI, Host and connection reuse keep using the name).
A refused destination answers 403 JSON; a name that does not resolve is an upstream failure (502 JSON,
see `upstream`), not a denial. It must never run for a request that was not allowed.
"""

from __future__ import annotations

from collections.abc import Awaitable

from mitmproxy import connection, http
from mitmproxy.flow import Error
from mitmproxy.proxy import server_hooks

from .._addresses import AddressRefused, ResolveFailed
from .._responses import denied
from .._state import META_ACTIVE, META_DENIED, ProxyState
from .upstream import answer

META_DIALED = "openshell.dialed"


class AddressGuard:
    def __init__(self, state: ProxyState):
        self.state = state
        # client connection id -> {(host, port): checked ip}
        self._checked: dict[str, dict[tuple[str, int], str]] = {}
        self._swapped: dict[str, tuple[str, int]] = {}

    def requestheaders(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """Sync when this client connection already checked the destination (the common keep-alive
        case); otherwise returns the coroutine that resolves and checks (mitmproxy awaits it)."""
        if flow.response is not None:
            return None
        if flow.metadata.get(META_ACTIVE) is None:  # not decided: never resolve
            flow.response = denied(flow.request.method, flow.request.host, flow.request.path, None,
                                   "no rule matched", "request was not decided", None)
            return None
        checked = self._checked.get(flow.client_conn.id)
        if checked is not None and (flow.request.host, flow.request.port) in checked:
            return None
        return self._check(flow)

    async def _check(self, flow: http.HTTPFlow) -> None:
        active = flow.metadata[META_ACTIVE]
        req = flow.request
        key = (req.host, req.port)
        try:
            ip = await self.state.resolver.checked_address(req.host, req.port, self.state.explicit(active))
        except AddressRefused as exc:
            req.stream = False
            flow.metadata[META_DENIED] = str(exc)
            flow.response = denied(req.method, req.host, req.path, active.version,
                                   "address check", str(exc), None)
            return
        except ResolveFailed as exc:  # allowed, but the destination does not exist: 502, not a denial
            req.stream = False
            flow.error = Error(str(exc))
            answer(flow, str(exc))
            return
        self._checked.setdefault(flow.client_conn.id, {})[key] = ip

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        server = data.server
        if server.address is None:
            return
        host, port = server.address
        ip = self._checked.get(data.client.id, {}).get((host, port))
        if ip is None:
            # Not checked for this connection (e.g. an eager connect): fail closed.
            server.error = f"destination {host}:{port} was not checked by the policy proxy"
            return
        if ip != host:
            self._swapped[server.id] = (host, port)
            server.address = (ip, port)

    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        original = self._swapped.pop(data.server.id, None)
        if original is not None:
            # mitmproxy forbids `server.address = ...` on an open connection; the socket is already
            # connected to the checked IP, this only restores the name for reuse matching and logs.
            object.__setattr__(data.server, "address", original)

    def server_connect_error(self, data: server_hooks.ServerConnectionHookData) -> None:
        original = self._swapped.pop(data.server.id, None)
        if original is not None:
            data.server.address = original

    def client_disconnected(self, client: connection.Client) -> None:
        self._checked.pop(client.id, None)
