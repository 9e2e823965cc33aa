"""Flow log addon: one record per decision (see `_flowlog.FIELDS`), written when the answer is done.

`sandbox` and `sandbox_created` name the sandbox instance whose channel the connection came through
(`created`, as registered, tells two sandboxes of one name apart; `client` is then `channel:<name>`);
`seq` is given by the writer (`_flowlog.FlowLog`).

`bytes_out` counts request body bytes sent towards the destination, `bytes_in` response body bytes
received for the caller (streamed bodies are counted as they pass). Records carry the normalised
path without query, never header values or bodies. A refusal that is not the policy's names its own
rule (`META_RULE`, e.g. "limits"); an allowed request that failed upstream keeps its decision, with the
proxy's 502/504 status and the `error` text.
"""

from __future__ import annotations

import time

from mitmproxy import http

from .._state import (
    META_ACTIVE,
    META_DECISION,
    META_DENIED,
    META_ROUTE,
    META_RULE,
    META_START,
    META_TARGET,
    ProxyState,
)


class _Counter:
    __slots__ = ("inner", "n")

    def __init__(self, inner):
        self.inner = inner if callable(inner) else None
        self.n = 0

    def __call__(self, chunk: bytes) -> bytes:
        self.n += len(chunk)
        return self.inner(chunk) if self.inner is not None else chunk


class FlowRecorder:
    def __init__(self, state: ProxyState):
        self.state = state

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.request.stream and flow.response is None:
            counter = _Counter(flow.request.stream)
            flow.request.stream = counter
            flow.metadata["openshell.req_counter"] = counter

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None and flow.response.stream:
            counter = _Counter(flow.response.stream)
            flow.response.stream = counter
            flow.metadata["openshell.resp_counter"] = counter

    def response(self, flow: http.HTTPFlow) -> None:
        self._record(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        if "openshell.logged" not in flow.metadata:
            self._record(flow)

    def http_connect_error(self, flow: http.HTTPFlow) -> None:
        self._record(flow)

    def _record(self, flow: http.HTTPFlow) -> None:
        flow.metadata["openshell.logged"] = True
        req, resp, meta = flow.request, flow.response, flow.metadata
        decision = meta.get(META_DECISION)
        route = meta.get(META_ROUTE)
        active = meta.get(META_ACTIVE)
        denied = meta.get(META_DENIED)
        if denied is not None:
            action, reason = "deny", denied
            rule = meta.get(META_RULE) or (
                decision.rule if decision is not None and not decision.allowed
                else "address check" if decision is not None else "no rule matched")
        elif route is not None:
            action, rule, reason = "allow", route.describe(), "inference route"
        elif decision is not None:
            action, rule, reason = decision.action, decision.rule, decision.reason
        else:
            action, rule, reason = "deny", "no rule matched", "not decided"
        target = meta.get(META_TARGET)
        if target is not None:
            scheme, host, port, path = target
        else:
            scheme, host, port, path = req.scheme, req.host, req.port, req.path.split("?", 1)[0]
        req_counter = meta.get("openshell.req_counter")
        resp_counter = meta.get("openshell.resp_counter")
        if resp_counter is not None:
            bytes_in = resp_counter.n
        elif resp is not None and resp.raw_content is not None:
            bytes_in = len(resp.raw_content)
        else:
            bytes_in = 0
        bytes_out = req_counter.n if req_counter is not None else len(req.raw_content or b"")
        entry = self.state.channel(flow)  # the sandbox instance the connection came from, registered or not
        start = meta.get(META_START)
        peer = flow.client_conn.peername
        client = f"channel:{entry.name}" if entry is not None else f"{peer[0]}:{peer[1]}" if peer else None
        self.state.flowlog.write({
            "id": self.state.flowlog.new_id(),
            "ts": round(time.time(), 6),
            "sandbox": entry.name if entry is not None else None,
            "sandbox_created": entry.created if entry is not None else None,
            "client": client,
            "method": req.method,
            "scheme": scheme,
            "host": host,
            "port": port,
            "path": path,
            "decision": action,
            "rule": rule,
            "reason": reason,
            "policy_version": active.version if active is not None else None,
            "status": resp.status_code if resp is not None else None,
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "duration_ms": round((time.monotonic() - start) * 1000, 3) if start else None,
            "route": ({"index": route.index, "name": route.name, "backend": route.backend.url}
                      if route is not None else None),
            "error": flow.error.msg if flow.error is not None else None,
        })
