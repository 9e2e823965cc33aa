"""The state one proxy process shares between its addons: who is calling, which policy is in force,
secrets, the resolver and the flow log. Plain data and lookups; it must never do network I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mitmproxy import http

from ._addresses import Resolver
from ._flowlog import FlowLog, PipeFlowLog
from ._policies import PolicySet
from ._registry import HOST_CALLER, Registry
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


@dataclass
class ProxyState:
    state_dir: Path
    registry: Registry
    policies: PolicySet
    secrets: SecretStore
    flowlog: FlowLog | PipeFlowLog
    resolver: Resolver

    def caller(self, flow: http.HTTPFlow) -> str | None:
        """Policy name of the flow's peer: a sandbox, HOST_CALLER, or None (unregistered sandbox address)."""
        peer = flow.client_conn.peername
        return self.registry.caller(peer[0]) if peer else HOST_CALLER
