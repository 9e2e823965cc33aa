"""Egress enforcement: every request is decided on its normalised name, method and path before any
DNS lookup or upstream connection, under the policy snapshot of its caller.

* The caller is the sandbox whose channel the connection came through, else the host caller (whatever
  its address); a connection of a sandbox no longer registered and a caller without a valid policy are
  denied everything.
* The destination name must agree everywhere: the request target, the Host / :authority header (one
  Host header at most; an HTTP/2 request's Host too, if it sends one), the authority of an absolute-form
  request-target inside a tunnel, the CONNECT authority and the TLS SNI; otherwise 400. Inside a tunnel
  an absolute-form target is forwarded in origin-form.
* The normalised path and host are what is forwarded (the bytes evaluated are the bytes sent).
* Nothing that could re-frame the request at an HTTP/1 upstream is forwarded: a method that is not a
  token, CR/LF/NUL in a header value (an HTTP/2 client can send them, an HTTP/1 client a bare CR;
  mitmproxy copies values byte for byte) or a control character or space in the query answers 400,
  inference routes included.
* A denial answers 403 JSON (error, method, host, path, policy_version, rule, hint); a request that
  cannot be evaluated safely answers 400. In audit mode a would-be denial is logged and let through.
* A method override in the body (`_method` in a form or JSON body): where the rule allows the request
  but not every method on its path (`any_method_allowed`), a body a server could read a form or JSON
  from is held back (at most FORM_BODY_LIMIT, else 413; chunked bodies too) and the request is
  decided again with it in the `request` hook, before anything is sent upstream.
* A CONNECT to a host:port that no allow rule or inference route of the caller could ever let
  through is answered 403 at once: no TLS handshake with the client, no DNS lookup, no upstream
  connection. Audit mode lets it through; its requests are then judged and logged one by one.
* Raw TCP/UDP/DNS flows (non-HTTP inside a tunnel) are killed: nothing leaves without a decision.
It must never resolve a name or open a connection.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace

from mitmproxy import http, tcp, udp

from jupyter_openshell.policy import (
    OVERRIDE_HEADERS,
    BadRequest,
    HostInfo,
    RequestInfo,
    may_carry_override,
    normalize_host,
    normalize_method,
    normalize_path,
    split_host_port,
)

from .._registry import HOST_CALLER
from .._responses import bad_request, denied, json_response
from .._state import (
    META_ACTIVE,
    META_BODY_LIMIT,
    META_BODY_OVERFLOW,
    META_CALLER,
    META_DECISION,
    META_DENIED,
    META_ROUTE,
    META_START,
    META_TARGET,
    ProxyState,
)

_DEFAULT_PORT = {"http": 80, "https": 443}
# only these headers matter to the decision (method override; the body's type and coding)
_OVERRIDE_HEADERS = frozenset(h.encode() for h in OVERRIDE_HEADERS)
_BODY_HEADERS = _OVERRIDE_HEADERS | {b"content-type", b"content-encoding"}
FORM_BODY_LIMIT = 1024 * 1024  # a body checked for a method override is held back up to this
META_BODY_CHECK = "openshell.body_check"
_HOSTS: dict[str, HostInfo] = {}
# bytes an HTTP/1 upstream may read as the end of a header line or of the request line
_BAD_VALUE = re.compile(rb"[\x00\r\n]")
_BAD_QUERY = re.compile(rb"[\x00-\x20\x7f]")


def _host(name: str) -> HostInfo:
    """`normalize_host` with a bounded cache (a proxy sees few distinct names; it is pure)."""
    info = _HOSTS.get(name)
    if info is None:
        info = normalize_host(name)
        if len(_HOSTS) >= 4096:
            _HOSTS.clear()
        _HOSTS[name] = info
    return info


def _check_framing(req: http.Request, query: bytes) -> None:
    """Raise `BadRequest` for what an HTTP/1 upstream could parse as more header lines or requests."""
    normalize_method(req.data.method)
    if _BAD_QUERY.search(query):
        raise BadRequest("control character or space in the query", "query")
    for name, value in req.headers.fields:
        if _BAD_VALUE.search(value):
            header = name[:64].decode("latin-1")
            raise BadRequest(f"CR, LF or NUL in the value of header {header!r}", "header")



def _too_large(length: int | None) -> str:
    size = f"this one has {length}" if length is not None else "this one has more"
    return (f"a form or JSON body that could carry a method override (_method) is checked up to "
            f"{FORM_BODY_LIMIT} bytes where the rule does not allow every method; {size}")


def _host_headers(req: http.Request) -> list[str]:
    """Every Host header value (one pass over the fields; mitmproxy's lookups cost several times more)."""
    return [v.decode("utf-8", "surrogateescape") for k, v in req.data.headers.fields
            if len(k) == 4 and k.lower() == b"host"]


def _authority(scheme: str, host: str, port: int) -> str:
    """`host[:port]` as a Host header writes it (IPv6 in brackets, the scheme's default port left out)."""
    name = f"[{host}]" if ":" in host else host
    return name if port == _DEFAULT_PORT.get(scheme) else f"{name}:{port}"

class EgressEnforcer:
    def __init__(self, state: ProxyState):
        self.state = state

    # -- identity and snapshot ------------------------------------------------------------------
    def _deny(self, flow: http.HTTPFlow, reason: str, *, host: str = "", path: str = "",
              version: str | None = None, rule: str = "no rule matched", hint: str | None = None) -> None:
        flow.request.stream = False
        flow.metadata[META_DENIED] = reason
        flow.response = denied(flow.request.method, host or flow.request.host, path or flow.request.path,
                               version, rule, reason, hint)

    def _bad(self, flow: http.HTTPFlow, message: str, version: str | None) -> None:
        flow.request.stream = False
        flow.metadata[META_DENIED] = f"bad request: {message}"
        flow.response = bad_request(message, version)

    def _snapshot(self, flow: http.HTTPFlow):
        caller = self.state.caller(flow)
        flow.metadata[META_CALLER] = caller
        if caller is None:
            self._deny(flow, self.state.refusal(flow))
            return None
        active = self.state.policies.get(caller)
        if active is None:
            self._deny(flow, f"no valid policy is loaded for {caller!r}")
            return None
        flow.metadata[META_ACTIVE] = active
        return active

    # -- CONNECT: refuse a host no rule could allow; every request inside the tunnel is decided -----
    def http_connect(self, flow: http.HTTPFlow) -> None:
        """Answer 403 to a CONNECT whose host:port no allow rule (or inference route) of the caller
        could ever let through, before any TLS handshake, DNS lookup or upstream connection."""
        flow.metadata.setdefault(META_START, time.monotonic())
        if flow.response is not None:  # refused before (identity)
            return
        active = self._snapshot(flow)
        if active is None:
            return
        req = flow.request
        try:
            host = normalize_host(req.host)
        except BadRequest as exc:
            self._bad(flow, str(exc), active.version)
            return
        compiled = active.compiled
        if compiled.host_may_be_allowed(host.value, req.port) or self._routed(active, flow, host.value):
            return  # audit mode lands here too: its requests are judged (and logged) one by one
        decision = compiled.decide_connect(host.value, req.port)
        flow.metadata[META_DECISION] = decision
        flow.metadata[META_TARGET] = ("https", host.value, req.port, "/")
        self._deny(flow, decision.reason, host=host.value, path="/",
                   version=active.version, rule=decision.rule, hint=decision.hint)

    @staticmethod
    def _routed(active, flow: http.HTTPFlow, host: str) -> bool:
        """Could an inference route of this caller take requests to `host` (any path)?"""
        routes = active.policy.routes
        if not routes:
            return False
        caller = flow.metadata[META_CALLER]
        caller = "host" if caller == HOST_CALLER else caller
        return any(host in r.hosts and re.fullmatch(r.caller_pattern, caller) for r in routes)

    # -- every request -----------------------------------------------------------------------
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        flow.metadata.setdefault(META_START, time.monotonic())
        if flow.response is not None:
            return
        active = self._snapshot(flow)
        if active is None:
            return
        req = flow.request
        raw_path, _, query = req.data.path.partition(b"?")
        try:
            _check_framing(req, query)
            hosts = _host_headers(req)
            host = self._agreed_host(flow, hosts)
            path = normalize_path(raw_path.decode("ascii") if raw_path.isascii() else raw_path)
        except BadRequest as exc:
            self._bad(flow, str(exc), active.version)
            return
        flow.metadata[META_TARGET] = (req.scheme, host.value, req.port, path)
        if req.data.authority and req.http_version.startswith("HTTP/1"):
            req.data.authority = b""  # forward origin-form: the judged path to the judged host
        caller = flow.metadata[META_CALLER]
        route = active.compiled.route_inference("host" if caller == HOST_CALLER else caller, host.value, path)
        if route is not None:
            flow.metadata[META_ROUTE] = route
            req.data.path = (path + ("?" + query.decode("latin-1") if query else "")).encode("latin-1")
            return  # the inference router rewrites the destination and credentials
        overrides = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in req.headers.fields
                     if k.lower() in _OVERRIDE_HEADERS]
        decision = active.compiled.decide(RequestInfo(
            req.method, req.scheme, host.value, req.port, path, query.decode("latin-1"), overrides))
        flow.metadata[META_DECISION] = decision
        if decision.status == 400:
            self._bad(flow, decision.reason.removeprefix("bad request: "), active.version)
        elif not decision.allowed:
            self._deny(flow, decision.reason, host=decision.host, path=decision.path, version=active.version,
                       rule=decision.rule, hint=decision.hint)
        else:
            new_path = (decision.path + ("?" + query.decode("latin-1") if query else "")).encode("latin-1")
            if new_path != req.data.path:
                req.data.path = new_path
            if decision.host != req.data.host:
                req.data.host = decision.host
            # forward the Host / :authority that was judged, not the client's spelling
            canonical = _authority(req.scheme, decision.host, req.port)
            h2 = not req.data.http_version.startswith(b"HTTP/1")
            sent = req.authority if h2 else (hosts[0] if hosts else "")
            if (sent and sent != canonical) or (h2 and hosts and hosts[0] != canonical):
                req.host_header = canonical
            if not decision.audit:
                self._hold_body(flow, active, decision, RequestInfo(
                    req.method, req.scheme, decision.host, req.port, decision.path, query.decode("latin-1"),
                    [(k.decode("latin-1"), v.decode("latin-1")) for k, v in req.headers.fields
                     if k.lower() in _BODY_HEADERS]))

    # -- method overrides in the body -----------------------------------------------------------
    def _hold_body(self, flow: http.HTTPFlow, active, decision, info: RequestInfo) -> None:
        """Hold back a body that could override the method where the rule does not allow every method,
        so `request` decides with it; refuse one too large to hold (413)."""
        req = flow.request
        length = req.headers.get("content-length")
        if length is not None:
            has_body = length.strip() not in ("", "0")
        else:
            has_body = "transfer-encoding" in req.headers or req.http_version.startswith(("HTTP/2", "HTTP/3"))
        if not has_body or not may_carry_override(info.headers) or active.compiled.any_method_allowed(info):
            return
        if length is not None and length.strip().isdigit() and int(length) > FORM_BODY_LIMIT:
            self._refuse_body(flow, decision, 413, _too_large(int(length)))
        else:
            req.stream = False
            flow.metadata[META_BODY_LIMIT] = FORM_BODY_LIMIT
            flow.metadata[META_BODY_CHECK] = info

    def _refuse_body(self, flow: http.HTTPFlow, decision, status: int, reason: str) -> None:
        flow.request.stream = False
        flow.metadata[META_DENIED] = reason
        flow.metadata[META_DECISION] = replace(decision, action="deny", allowed=False, status=status,
                                               reason=reason)
        flow.response = json_response(status, {
            "error": f"blocked by policy: {reason}", "method": decision.method, "host": decision.host,
            "path": decision.path, "policy_version": decision.policy_version, "rule": decision.rule,
            "hint": None})

    def request(self, flow: http.HTTPFlow) -> None:
        """Decide again, with the buffered body, a request `_hold_body` kept back."""
        info = flow.metadata.pop(META_BODY_CHECK, None)
        if info is None or flow.response is not None:
            return
        if flow.metadata.get(META_BODY_OVERFLOW):
            self._refuse_body(flow, flow.metadata[META_DECISION], 413, _too_large(None))
            return
        active = flow.metadata[META_ACTIVE]
        decision = active.compiled.decide(replace(info, body=flow.request.raw_content or b""))
        flow.metadata[META_DECISION] = decision
        if not decision.allowed:
            flow.request.data.content = b""  # held back and never sent (the flow log counts 0 bytes out)
        if decision.status == 400:
            self._bad(flow, decision.reason.removeprefix("bad request: "), active.version)
        elif not decision.allowed:
            self._deny(flow, decision.reason, host=decision.host, path=decision.path, version=active.version,
                       rule=decision.rule, hint=decision.hint)

    def _agreed_host(self, flow: http.HTTPFlow, hosts: list[str]):
        """The normalised destination host, after checking that the target, the Host header (`hosts`:
        its values) or :authority, an absolute-form target's authority inside a tunnel, the CONNECT and
        the SNI agree."""
        req = flow.request
        host = _host(req.host)
        if len(hosts) > 1:
            raise BadRequest("more than one Host header", "host")
        # HTTP/2: the :authority and a Host header, if sent too (both reach an HTTP/1 upstream);
        # HTTP/1 in a tunnel: an absolute-form target's authority (an upstream routes by it, RFC 9112 3.2.2)
        authority = req.authority
        for what, value in (("Host header", hosts[0] if hosts else ""),
                            ("request-target authority" if req.http_version.startswith("HTTP/1")
                             else ":authority", authority)):
            if not value:
                continue
            h_name, h_port = split_host_port(value)
            if _host(h_name) != host:
                raise BadRequest(f"{what} {value!r} does not match the request target {req.host!r}", "host")
            if (h_port or _DEFAULT_PORT.get(req.scheme)) != req.port:
                raise BadRequest(f"{what} {value!r} does not match the request port {req.port}", "host")
        sni = flow.client_conn.sni
        if sni and _host(sni) != host:
            raise BadRequest(f"TLS SNI {sni!r} does not match the request target {req.host!r}", "host")
        return host

    # -- nothing but HTTP leaves ------------------------------------------------------------
    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        flow.kill()

    def udp_start(self, flow: udp.UDPFlow) -> None:
        flow.kill()
