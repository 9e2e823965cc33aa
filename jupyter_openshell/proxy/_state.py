"""The state one proxy process shares between its addons: who is calling (the sandbox channel each
connection came through), which policy is in force, secrets, the resolver and the flow log. Plain data
and lookups; it must never do network I/O.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mitmproxy import http

from ._addresses import Resolver
from ._flowlog import FlowLog, PipeFlowLog
from ._policies import PolicySet
from ._registry import HOST_CALLER, Registry, SandboxEntry
from ._secrets import SecretStore

META_CALLER = "openshell.caller"
META_ACTIVE = "openshell.active"
META_DECISION = "openshell.decision"
META_ROUTE = "openshell.route"
META_DENIED = "openshell.denied"
META_START = "openshell.start"
META_TARGET = "openshell.target"
# set at requestheaders: buffer this request's body (at most this many bytes), never stream it
META_BODY_LIMIT = "openshell.body_limit"
META_BODY_OVERFLOW = "openshell.body_overflow"  # set once a held body passed its limit (it is dropped)
META_RULE = "openshell.rule"  # the rule a refusal names when it is not the policy's (e.g. "limits")
META_MAX_BODY = "openshell.max_body"  # bytes this request's body may have (set once it is allowed)
META_UPSTREAM_ERROR = "openshell.upstream_error"  # the flow failed upstream before any response


@dataclass
class ProxyState:
    state_dir: Path
    registry: Registry
    policies: PolicySet
    secrets: SecretStore
    flowlog: FlowLog | PipeFlowLog
    resolver: Resolver
    # mitmproxy client connection id -> the sandbox whose channel it came through (bound on arrival)
    channels: dict[str, SandboxEntry] = field(default_factory=dict)
    # client connection id -> the uid (None: unknown) of a TCP peer that is neither the proxy's own user
    # nor root: no host caller (`addons/identity.py` fills it on arrival)
    foreign: dict[str, int | None] = field(default_factory=dict)

    def channel(self, flow: http.HTTPFlow) -> SandboxEntry | None:
        """The sandbox whose channel the flow's connection came through; None: not through a channel."""
        return self.channels.get(flow.client_conn.id)

    def caller(self, flow: http.HTTPFlow) -> str | None:
        """Policy name of the flow's connection: its sandbox, HOST_CALLER for a connection that did not come
        through a sandbox channel (whatever its address) from the proxy's own user or root, or None (no
        policy serves it: `refusal` says why) for another user's or a sandbox no longer registered."""
        entry = self.channels.get(flow.client_conn.id)
        if entry is None:
            return None if flow.client_conn.id in self.foreign else HOST_CALLER
        return entry.name if self.registry.current(entry) else None

    def refusal(self, flow: http.HTTPFlow) -> str:
        """Why `caller(flow)` is None."""
        if flow.client_conn.id in self.channels or flow.client_conn.id not in self.foreign:
            return "connection of a sandbox that is no longer registered"
        uid = self.foreign[flow.client_conn.id]
        who = f"uid {uid}" if uid is not None else "a socket outside this machine's table"
        return (f"connection from {who}: only the proxy's own user (uid {os.getuid()}) and root are its host "
                "caller; sandboxes reach it through their channels")
