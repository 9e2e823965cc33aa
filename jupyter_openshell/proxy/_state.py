"""The state one proxy process shares between its addons: who is calling, which policy is in force,
secrets, the resolver and the flow log. Plain data and lookups; it must never do network I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mitmproxy import http

from ._addresses import Explicit, Resolver, explicit_networks
from ._flowlog import FlowLog, PipeFlowLog
from ._policies import Active, PolicySet
from ._registry import HOST_CALLER, Registry
from ._secrets import SecretStore

META_CALLER = "openshell.caller"
META_ACTIVE = "openshell.active"
META_DECISION = "openshell.decision"
META_ROUTE = "openshell.route"
META_DENIED = "openshell.denied"
META_START = "openshell.start"
META_TARGET = "openshell.target"
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
    _explicit: dict[str, Explicit] = field(default_factory=dict)

    def caller(self, flow: http.HTTPFlow) -> str | None:
        """Policy name of the flow's peer: a sandbox, HOST_CALLER, or None (unregistered sandbox address)."""
        peer = flow.client_conn.peername
        return self.registry.caller(peer[0]) if peer else HOST_CALLER

    def explicit(self, active: Active) -> Explicit:
        nets = self._explicit.get(active.version)
        if nets is None:
            if len(self._explicit) > 256:
                self._explicit.clear()
            nets = self._explicit[active.version] = explicit_networks(active.policy)
        return nets
