"""Allowed but failed is not denied: a request the policy allowed that fails upstream before any response
(the name does not resolve, the connection is refused or times out, TLS fails, the upstream closes or
answers what cannot be relayed) is answered 502, or 504 for a timeout, with a JSON body whose `error`
is "upstream-failure" (`_responses.upstream_failure`), the reason and the rule that allowed it. Its flow
record keeps the decision ("allow" / "audit-allow") with that status and the `error` text.

Connection attempts are bounded: after `connect_timeout` seconds of trying, the attempt is abandoned
and the request answered 504 (mitmproxy itself waits for the kernel's TCP timeout, about two minutes).
It must never answer a request the policy did not allow, nor one the upstream already answered.
"""

from __future__ import annotations

import asyncio

from mitmproxy import connection, http
from mitmproxy.proxy import server_hooks

from .._responses import upstream_failure
from .._state import (
    META_ACTIVE,
    META_DECISION,
    META_DENIED,
    META_ROUTE,
    META_TARGET,
    META_UPSTREAM_ERROR,
)

_TIMEOUT_WORDS = ("timed out", "timeout", "[errno 110]")


def answer(flow: http.HTTPFlow, reason: str, *, close: bool = False) -> None:
    """Set the upstream-failure answer (502, or 504 when `reason` is a timeout) of an allowed flow."""
    meta = flow.metadata
    route, decision, active = meta.get(META_ROUTE), meta.get(META_DECISION), meta.get(META_ACTIVE)
    rule = route.describe() if route is not None else decision.rule if decision is not None else "unknown"
    req = flow.request
    target = meta.get(META_TARGET)
    _, host, port, path = target if target is not None else (None, req.host, req.port, req.path)
    status = 504 if any(w in reason.lower() for w in _TIMEOUT_WORDS) else 502
    flow.response = upstream_failure(status, reason, method=req.method, host=host, port=port, path=path,
                                     version=active.version if active is not None else None, rule=rule,
                                     close=close)


def allowed(flow: http.HTTPFlow) -> bool:
    meta = flow.metadata
    if META_DENIED in meta:
        return False
    decision = meta.get(META_DECISION)
    return META_ROUTE in meta or (decision is not None and decision.allowed)


class UpstreamFailures:
    def __init__(self, connect_timeout: float):
        self.connect_timeout = connect_timeout
        self._timers: dict[str, asyncio.TimerHandle] = {}

    # -- the connect timeout ------------------------------------------------------------------
    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        task = asyncio.current_task()
        if data.server.error or self.connect_timeout <= 0 or task is None:
            return
        self._arm(data.server, task)

    def _arm(self, server: connection.Server, task: asyncio.Task) -> None:
        self._timers[server.id] = asyncio.get_running_loop().call_later(
            self.connect_timeout, self._expire, server, task)

    def _expire(self, server: connection.Server, task: asyncio.Task) -> None:
        self._timers.pop(server.id, None)
        if server.timestamp_tcp_setup is not None or task.done():
            return  # connected (or finished) meanwhile
        if server.timestamp_start is None:  # still queued behind mitmproxy's per-destination limit
            self._arm(server, task)
            return
        host, port = server.address or ("?", 0)
        task.cancel(f"connect to {host}:{port} timed out after {self.connect_timeout:g} s")

    def _disarm(self, data: server_hooks.ServerConnectionHookData) -> None:
        timer = self._timers.pop(data.server.id, None)
        if timer is not None:
            timer.cancel()

    server_connected = server_connect_error = _disarm

    # -- the answer -------------------------------------------------------------------------
    def error(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or not flow.metadata.get(META_UPSTREAM_ERROR) or not allowed(flow):
            return
        answer(flow, flow.error.msg if flow.error is not None else "the upstream failed")
