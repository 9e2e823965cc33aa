"""Compiled policies: `CompiledPolicy.decide(RequestInfo) -> Decision` and inference routing.

Hosts are indexed (exact names and IPs in a dict, `*.`/`**.` wildcards by suffix, CIDRs in a list),
candidates per host are cached and split by first path segment, path globs are precompiled regexes.
A request is allowed only if its literal path, its `;param`-stripped path and every overriding method
(X-HTTP-Method-Override and kin) are allowed. Pure: no I/O, no DNS; it never raises on a request
(malformed requests come back as a 400 decision).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ._errors import BadRequest
from ._glob import compile_path_glob, compile_value_glob
from ._model import EgressRule, InferenceRoute, Policy
from ._normalize import (
    HostInfo,
    normalize_host,
    normalize_method,
    normalize_path,
    override_methods,
    parse_query,
    split_host_port,
    strip_params,
)
from ._rules import narrowest_rule, rule_yaml

_PLAN_CACHE_MAX = 4096


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """A request as seen by the proxy. `path` may carry `?query` if `query` is empty;
    `headers` is a mapping, a list of (name, value) pairs, or mitmproxy `Headers`."""

    method: str
    scheme: str = "https"
    host: str = ""
    port: int | None = None
    path: str = "/"
    query: str = ""
    headers: Any = ()

    @classmethod
    def from_url(cls, method: str, url: str, headers: Any = ()) -> RequestInfo:
        parts = urlsplit(url)
        host, port = split_host_port(parts.netloc.rpartition("@")[2])
        return cls(
            method=method,
            scheme=parts.scheme or "http",
            host=host,
            port=port,
            path=parts.path or "/",
            query=parts.query,
            headers=headers,
        )


@dataclass(slots=True)
class Decision:
    """The outcome for one request (treat as read-only). `status` is 400 (malformed), 403 (denied)
    or None (let through). `method`, `host`, `port`, `path` are the normalised request: forward exactly
    these. `hint` is the YAML of the narrowest rule that would allow a refused (or audit-allowed)
    request, built on first access."""

    action: str  # "allow" | "deny" | "audit-allow"
    allowed: bool
    rule_index: int | None
    rule: str
    reason: str
    policy_version: str
    audit: bool = False
    status: int | None = None
    method: str = ""
    scheme: str = ""
    host: str = ""
    host_kind: str = ""
    port: int = 0
    path: str = ""

    @property
    def hint(self) -> str | None:
        if self.action == "allow" or self.status == 400:
            return None
        return rule_yaml(narrowest_rule(self.method, self.host, self.port, self.path))

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["hint"] = self.hint
        return out


class _Rule:
    __slots__ = ("allow", "first_segs", "index", "methods", "paths", "ports", "query", "text")

    def __init__(self, rule: EgressRule):
        self.index = rule.index
        self.allow = rule.action == "allow"
        self.ports = frozenset(rule.ports)
        self.methods = frozenset(rule.methods) if rule.methods is not None else None
        self.query = _compile_query(rule.query)
        self.text = rule.describe()
        self.paths = None
        self.first_segs: frozenset[str] | None = None
        if rule.paths is not None:
            self.paths = [
                (
                    compile_path_glob(p.path).match,
                    frozenset(p.methods) if p.methods is not None else None,
                    _compile_query(p.query),
                )
                for p in rule.paths
            ]
            segs = {p.path[1:].split("/", 1)[0] for p in rule.paths}
            if not any("*" in s for s in segs):
                self.first_segs = frozenset(segs)

    def matches(self, method: str, port: int, path: str, qp: tuple) -> bool:
        if port not in self.ports or (self.methods is not None and method not in self.methods):
            return False
        if self.query and not _query_ok(self.query, qp):
            return False
        if self.paths is None:
            return True
        for match, methods, query in self.paths:
            if (methods is None or method in methods) and match(path) and (not query or _query_ok(query, qp)):
                return True
        return False


def _compile_query(query: tuple) -> tuple:
    return tuple((name, tuple(compile_value_glob(g).match for g in globs)) for name, globs in query)


def _query_ok(matchers: tuple, parses: tuple) -> bool:
    for pairs in parses:
        for name, globs in matchers:
            values = [v for k, v in pairs if k == name]
            if not values or not all(any(g(v) for g in globs) for v in values):
                return False
    return True


class CompiledPolicy:
    """A policy ready to decide. Immutable and thread-safe (the plan cache only ever adds or clears)."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.version = policy.version
        self.mode = policy.mode
        self._rules = [_Rule(r) for r in policy.egress]
        self._exact: dict[str, list[int]] = {}
        self._wild1: dict[str, list[int]] = {}
        self._wildn: dict[str, list[int]] = {}
        self._cidrs: list[tuple[Any, int]] = []
        self._anyhost: list[int] = []
        for i, r in enumerate(policy.egress):
            h = r.host
            if h is None:
                self._anyhost.append(i)
            elif h.startswith("**."):
                self._wildn.setdefault(h[3:], []).append(i)
            elif h.startswith("*."):
                self._wild1.setdefault(h[2:], []).append(i)
            elif "/" in h:
                self._cidrs.append((ipaddress.ip_network(h), i))
            else:
                self._exact.setdefault(h, []).append(i)
        self._needs_query = any(r.query or (r.paths and any(q for _, _, q in r.paths)) for r in self._rules)
        self._plans: dict[str, tuple[tuple[int, ...], dict[str, tuple[int, ...]]]] = {}
        self._anyhost_plan = self._build_plan(set(self._anyhost))
        self._routes = [
            (
                re.compile(r.caller_pattern),
                frozenset(r.hosts),
                [compile_path_glob(p).match for p in r.paths],
                r,
            )
            for r in policy.routes
        ]

    # --- egress ---

    def _build_plan(self, found: set[int]) -> tuple[tuple[int, ...], dict[str, tuple[int, ...]]]:
        order = sorted(found)
        generic = tuple(i for i in order if self._rules[i].first_segs is None)
        by_seg: dict[str, set[int]] = {}
        for i in order:
            for seg in self._rules[i].first_segs or ():
                by_seg.setdefault(seg, set(generic)).add(i)
        return generic, {s: tuple(sorted(ids)) for s, ids in by_seg.items()}

    def _plan(self, hi: HostInfo) -> tuple[tuple[int, ...], dict[str, tuple[int, ...]]]:
        """Candidate rules for a host, in order: (rules for any first path segment, by segment)."""
        plan = self._plans.get(hi.value)
        if plan is not None:
            return plan
        found: set[int] = set(self._exact.get(hi.value, ()))
        if hi.kind == "name":
            labels = hi.value.split(".")
            if self._wild1 and len(labels) > 1:
                found.update(self._wild1.get(".".join(labels[1:]), ()))
            if self._wildn:
                for i in range(1, len(labels)):
                    found.update(self._wildn.get(".".join(labels[i:]), ()))
        elif self._cidrs:
            addr = ipaddress.ip_address(hi.value)
            found.update(i for net, i in self._cidrs if addr.version == net.version and addr in net)
        if not found:
            return self._anyhost_plan  # hosts no rule names share one plan (and never fill the cache)
        plan = self._build_plan(found.union(self._anyhost))
        if len(self._plans) >= _PLAN_CACHE_MAX:
            self._plans.clear()
        self._plans[hi.value] = plan
        return plan

    def _first(self, method: str, hi: HostInfo, port: int, path: str, qp: tuple) -> int | None:
        generic, by_seg = self._plan(hi)
        cands = by_seg.get(path[1:].split("/", 1)[0], generic) if by_seg else generic
        rules = self._rules
        for i in cands:
            if rules[i].matches(method, port, path, qp):
                return i
        return None

    def _allowed(self, idx: int | None) -> bool:
        return idx is not None and self._rules[idx].allow

    def decide(self, req: RequestInfo) -> Decision:
        """Decide one request. Never raises for a malformed request: that is a 400 decision."""
        try:
            method = normalize_method(req.method)
            host, req_port = req.host, req.port
            if isinstance(host, str) and host.count(":") == 1:  # "host:port" (IPv6 has more colons)
                host, host_port = split_host_port(host)
                if req_port and host_port != req_port:
                    raise BadRequest(f"port {host_port} in host does not match port {req_port}", "host")
                req_port = host_port
            hi = normalize_host(host)
            path, query = req.path, req.query
            if "?" in path:
                path, _, q2 = path.partition("?")
                query = query or q2
            path = normalize_path(path)
            scheme = (req.scheme or "http").lower()
            port = req_port or (443 if scheme == "https" else 80)
            if not isinstance(port, int) or not 0 < port < 65536:
                raise BadRequest(f"invalid port {port!r}", "port")
            overrides = override_methods(req.headers, query)
            qp = (parse_query(query), parse_query(query, "&;")) if self._needs_query else ((), ())
        except BadRequest as exc:
            return Decision(
                action="deny",
                allowed=False,
                rule_index=None,
                rule="bad request",
                reason=f"bad request: {exc}",
                policy_version=self.version,
                status=400,
                method=str(req.method)[:32],
                scheme=str(req.scheme),
                host=str(req.host)[:255],
                port=req.port or 0,
                path=str(req.path)[:2048],
            )
        idx = self._first(method, hi, port, path, qp)
        reason = ""
        if self._allowed(idx) and ";" in path:
            bare = strip_params(path)
            idx2 = self._first(method, hi, port, bare, qp)
            if not self._allowed(idx2):
                idx, reason = idx2, f"the path without ;parameters ({bare}) is not allowed"
        if self._allowed(idx):
            for m in overrides:
                if m == method:
                    continue
                idx2 = self._first(m, hi, port, path, qp)
                if self._allowed(idx2) and ";" in path:
                    idx2 = self._first(m, hi, port, strip_params(path), qp)
                if not self._allowed(idx2):
                    idx, reason = (
                        idx2,
                        f"method override to {m} (X-HTTP-Method-Override or _method) is not allowed",
                    )
                    break
        allowed = self._allowed(idx)
        rule = self._rules[idx].text if idx is not None else "no rule matched"
        if not reason:
            if allowed:
                reason = f"allowed by {rule}"
            elif idx is not None:
                reason = f"denied by {rule}"
            else:
                reason = "no rule matched (unmatched requests are denied)"
        audit = not allowed and self.mode == "audit"
        return Decision(
            action="allow" if allowed else ("audit-allow" if audit else "deny"),
            allowed=allowed or audit,
            rule_index=idx,
            rule=rule,
            reason=reason,
            policy_version=self.version,
            audit=audit,
            status=None if (allowed or audit) else 403,
            method=method,
            scheme=scheme,
            host=hi.value,
            host_kind=hi.kind,
            port=port,
            path=path,
        )

    def host_may_be_allowed(self, host: str, port: int) -> bool:
        """Could any request to `host:port` be let through (an allow rule for it exists, or audit
        mode)? For refusing a CONNECT early, before any upstream connection or DNS lookup."""
        if self.mode == "audit":
            return True
        try:
            hi = normalize_host(host)
        except BadRequest:
            return False
        generic, by_seg = self._plan(hi)
        cands = set(generic).union(*by_seg.values()) if by_seg else generic
        return any(self._rules[i].allow and port in self._rules[i].ports for i in cands)

    def names_address(self, address: str) -> bool:
        """True if an allow rule names this IP address explicitly (as an IP or inside a CIDR).
        The proxy refuses loopback, link-local and its own addresses after DNS unless this holds."""
        try:
            hi = normalize_host(address)
        except BadRequest:
            return False
        if not hi.is_ip:
            return False
        idx = list(self._exact.get(hi.value, ()))
        addr = ipaddress.ip_address(hi.value)
        idx += [i for net, i in self._cidrs if addr.version == net.version and addr in net]
        return any(self._rules[i].allow for i in idx)

    # --- inference ---

    def route_inference(self, caller: str, host: str, path: str) -> InferenceRoute | None:
        """The first inference route for `caller` (sandbox name or "host") requesting `host` `path`
        (path may carry a query, which is ignored), or None. Malformed hosts/paths never route."""
        if not self._routes:
            return None
        try:
            hi = normalize_host(split_host_port(host)[0] if host.count(":") == 1 else host)
            p = normalize_path(path)
        except BadRequest:
            return None
        bare = strip_params(p)
        for rx, hosts, paths, route in self._routes:
            if (
                hi.value in hosts
                and rx.fullmatch(caller or "")
                and any(m(p) for m in paths)
                and any(m(bare) for m in paths)
            ):
                return route
        return None
