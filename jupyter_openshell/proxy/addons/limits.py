"""Request size limits: 414 for a request line/URL, 431 for a header section (bytes or field count),
413 for a body, each a JSON answer in the style of a denial (`_responses.too_large`) and a flow record
(decision "deny", rule "limits").

* `HeadLimits` (first in hook order, before any decision) checks the parsed URL and headers of every
  request, HTTP/1 and HTTP/2 alike. HTTP/1 heads too large to be parsed at all are refused by the
  protocol layer (`_protocol.h1`); this addon's `error` hook gives that flow its caller for the record.
* `BodyLimit` (after the decision) gives each allowed request its body limit (`META_MAX_BODY`: the
  policy's `network.limits.max_body`, else the proxy's `--max-body`) and answers 413 at once when the
  Content-Length is over it; a body without one is counted as it streams (`_protocol.stream`).
It must never read or buffer a body to measure it.
"""

from __future__ import annotations

from mitmproxy import http

from .._limits import Limits, refusal
from .._responses import too_large
from .._state import (
    META_ACTIVE,
    META_CALLER,
    META_DENIED,
    META_MAX_BODY,
    META_RULE,
    META_TARGET,
    ProxyState,
)


def _refuse(flow: http.HTTPFlow, limit: str, size: int, version: str | None) -> None:
    req = flow.request
    target = flow.metadata.get(META_TARGET)
    host, path = (target[1], target[3]) if target else (req.host, req.path.split("?", 1)[0][:256])
    req.stream = False
    flow.metadata.setdefault(META_TARGET, (req.scheme, host, req.port, path))
    flow.metadata[META_DENIED] = refusal(limit, size)[1]
    flow.metadata[META_RULE] = "limits"
    flow.response = too_large(limit, size, method=req.method, host=host, path=path, version=version,
                              close=req.http_version.startswith("HTTP/1"))


class HeadLimits:
    def __init__(self, state: ProxyState, limits: Limits):
        self.state = state
        self.limits = limits

    def _attribute(self, flow: http.HTTPFlow) -> str | None:
        """Caller and policy snapshot for the record of a request refused before any decision."""
        caller = self.state.caller(flow)
        flow.metadata[META_CALLER] = caller
        active = self.state.policies.get(caller) if caller is not None else None
        if active is not None:
            flow.metadata[META_ACTIVE] = active
        return active.version if active is not None else None

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        lim = self.limits
        data = flow.request.data
        fields = data.headers.fields
        if len(data.path) + len(data.authority) > lim.max_request_line:
            _refuse(flow, "max_request_line", lim.max_request_line, self._attribute(flow))
        elif len(fields) > lim.max_header_count:
            _refuse(flow, "max_header_count", lim.max_header_count, self._attribute(flow))
        elif sum(len(k) + len(v) + 4 for k, v in fields) > lim.max_header_bytes:
            _refuse(flow, "max_header_bytes", lim.max_header_bytes, self._attribute(flow))

    def error(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get(META_RULE) == "limits" and META_CALLER not in flow.metadata:
            self._attribute(flow)  # a head the protocol layer refused before it could be parsed


class BodyLimit:
    def __init__(self, limits: Limits):
        self.default = limits.max_body

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        active = flow.metadata.get(META_ACTIVE)
        override = active.policy.limits.max_body if active is not None else None
        limit = self.default if override is None else override
        flow.metadata[META_MAX_BODY] = limit
        for name, value in flow.request.data.headers.fields:
            if len(name) == 14 and name.lower() == b"content-length":
                if value.isdigit() and int(value) > limit:
                    _refuse(flow, "max_body", limit, active.version if active is not None else None)
                return
