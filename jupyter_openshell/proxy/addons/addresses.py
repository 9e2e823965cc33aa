"""Post-allow address check: after a request is allowed, its destination name is resolved once per
client connection and destination, every answer is checked (see `_addresses`), and mitmproxy dials
exactly the address that passed: `server_connect` swaps the checked IP into the server address and
`server_connected` puts the name back (so SNI, Host and connection reuse keep using the name).
A forbidden address passes only for a request whose own deciding rule (or inference route) admits it;
a later request on the same connection is checked against its own rule again. A refused destination
answers 403 JSON; a name that does not resolve is an upstream failure (502 JSON, see `upstream`), not
a denial. It must never run for a request that was not allowed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable

from mitmproxy import connection, http
from mitmproxy.flow import Error
from mitmproxy.proxy import server_hooks

from .._addresses import AddressRefused, Admits, ResolveFailed
from .._responses import denied
from .._state import META_ACTIVE, META_DECISION, META_DENIED, META_ROUTE, ProxyState
from .upstream import answer

META_DIALED = "openshell.dialed"


class AddressGuard:
    def __init__(self, state: ProxyState):
        self.state = state
        # client connection id -> {(host, port): (checked ip, whether only a rule's exception admits it)}
        self._checked: dict[str, dict[tuple[str, int], tuple[str, bool]]] = {}
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
        checked = self._checked.get(flow.client_conn.id, {}).get((flow.request.host, flow.request.port))
        if checked is not None:
            ip, excepted = checked
            if excepted and not _admits(flow)(ipaddress.ip_address(ip)):
                self._refuse(flow, f"{flow.request.host} resolves to {ip}, which the rule that allowed this "
                             "request does not name (`addresses`)")
            return None
        return self._check(flow)

    @staticmethod
    def _refuse(flow: http.HTTPFlow, reason: str) -> None:
        active = flow.metadata[META_ACTIVE]
        req = flow.request
        req.stream = False
        flow.metadata[META_DENIED] = reason
        flow.response = denied(req.method, req.host, req.path, active.version, "address check", reason, None)

    async def _check(self, flow: http.HTTPFlow) -> None:
        req = flow.request
        key = (req.host, req.port)
        try:
            checked = await self.state.resolver.checked_address(req.host, req.port, _admits(flow))
        except AddressRefused as exc:
            self._refuse(flow, str(exc))
            return
        except ResolveFailed as exc:  # allowed, but the destination does not exist: 502, not a denial
            req.stream = False
            flow.error = Error(str(exc))
            answer(flow, str(exc))
            return
        self._checked.setdefault(flow.client_conn.id, {})[key] = checked

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        server = data.server
        if server.address is None:
            return
        host, port = server.address
        ip, _ = self._checked.get(data.client.id, {}).get((host, port), (None, False))
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


def _admits(flow: http.HTTPFlow) -> Admits:
    """Which forbidden addresses this request may reach: those its inference route or its allowing
    rule names (in audit mode: the allow rules for its host and port); none for anything else."""
    route = flow.metadata.get(META_ROUTE)
    if route is not None:
        compiled = flow.metadata[META_ACTIVE].compiled
        return lambda ip: compiled.route_admits(route, str(ip))
    decision = flow.metadata.get(META_DECISION)
    if decision is not None and decision.allowed:
        return decision.admits
    return lambda ip: False
