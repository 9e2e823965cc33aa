"""The state one proxy process shares between its addons: who is calling (the sandbox channel each
connection came through), which policy is in force, secrets, the resolver and the flow log. Plain data
and lookups; it must never do network I/O.
"""

from __future__ import annotations

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

    def channel(self, flow: http.HTTPFlow) -> SandboxEntry | None:
        """The sandbox whose channel the flow's connection came through; None: not through a channel."""
        return self.channels.get(flow.client_conn.id)

    def caller(self, flow: http.HTTPFlow) -> str | None:
        """Policy name of the flow's connection: its sandbox, HOST_CALLER for a connection that did not come
        through a sandbox channel (whatever its address), or None for a sandbox no longer registered."""
        entry = self.channels.get(flow.client_conn.id)
        if entry is None:
            return HOST_CALLER
        return entry.name if self.registry.current(entry) else None
