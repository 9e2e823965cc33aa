"""Compiled policies: `CompiledPolicy.decide(RequestInfo) -> Decision` and inference routing.

Hosts are indexed (exact names and IPs in a dict, `*.`/`**.` wildcards by suffix, CIDRs in a list),
candidates per host are cached and split by first path segment (case-folded), path globs are
precompiled regexes. A request is allowed only if every reading of its path that keeps its meaning
(literal, without `;params`, `%2F` as `/`; see `path_forms`) and every overriding method
(X-HTTP-Method-Override and kin, `_method` in the query or a form/JSON body) is allowed. Allow rules
match the normalised path exactly (case-sensitive); deny rules match case-insensitively, against every
reading of the path (decoded, compatibility-mapped, ...), on every port unless they name ports, and a
deny rule's query matcher matches if any occurrence matches. Pure: no I/O, no DNS; it never raises on
a request (malformed requests come back as a 400 decision).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._body import body_override_methods
from ._errors import BadRequest
from ._glob import compile_path_glob, compile_value_glob
from ._normalize import (
    HostInfo,
    normalize_host,
    normalize_method,
    normalize_path,
    override_methods,
    parse_query,
    path_forms,
    split_host_port,
    strip_params,
)
from ._rules import RuleVariant, variants_for

if TYPE_CHECKING:  # (the model compiles itself: `Policy.compile()` imports this module)
    from ._model import EgressRule, InferenceRoute, Policy

_PLAN_CACHE_MAX = 4096
_ANY_PORT = range(1, 65536)
NO_RULE = "no rule matched (default deny)"
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """A request as seen by the proxy. `path` may carry `?query` if `query` is empty;
    `headers` is a mapping, a list of (name, value) pairs, or mitmproxy `Headers` (only the
    method-override headers, Content-Type and Content-Encoding are read). `body`: the request body
    when the caller buffered it (method overrides in a form or JSON body are then checked too)."""

    method: str
    scheme: str = "https"
    host: str = ""
    port: int | None = None
    path: str = "/"
    query: str = ""
    headers: Any = ()
    body: bytes | None = None

    @classmethod
    def from_url(cls, method: str, url: str, headers: Any = (), body: bytes | None = None) -> RequestInfo:
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
            body=body,
        )


@dataclass(slots=True)
class Decision:
    """The outcome for one request (treat as read-only). `status` is 400 (malformed), 403 (denied)
    or None (let through). `method`, `host`, `port`, `path` are the normalised request: forward exactly
    these. `rule` names the deciding rule (`network.egress[3] (deny, line 12): ...`) or says
    "no rule matched (default deny)". `admitted`: the addresses the allowing rule admits (its IP/CIDR
    host, its `addresses`; in audit mode, for a would-be denial, those of the allow rules for the
    host and port), see `admits()`. `variants` (and `hint`, the narrowest one's YAML) are the
    rules that would allow a refused or audit-allowed request, built on first access. A CONNECT refused
    before any request was seen has method "CONNECT" and an empty path (host-level variants)."""

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
    admitted: tuple[IPNetwork, ...] = field(default=(), repr=False)

    @property
    def variants(self) -> list[RuleVariant]:
        if self.action == "allow" or self.status == 400:
            return []
        return variants_for(self.method, self.scheme, self.host, self.port, self.path)

    @property
    def hint(self) -> str | None:
        variants = self.variants
        return variants[0].yaml if variants else None

    def admits(self, address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """True if the rule that allowed this request names `address` (as its IP/CIDR host or in its
        `addresses`): only then may the request reach a loopback, link-local or own address."""
        if not self.admitted or not self.allowed:
            return False
        try:
            ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.admitted)

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "admitted"}
        out["admitted"] = [str(n) for n in self.admitted]
        out["hint"] = self.hint
        out["variants"] = [v.to_dict() for v in self.variants]
        return out


def _networks(texts: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(t, strict=False) for t in texts)


def _admitted(rule: EgressRule) -> tuple[IPNetwork, ...]:
    if rule.action != "allow":
        return ()
    named = list(rule.addresses)
    if rule.host is not None and "*" not in rule.host:
        with contextlib.suppress(ValueError):  # a name admits nothing
            named.append(str(ipaddress.ip_network(rule.host, strict=False)))
    return _networks(tuple(dict.fromkeys(named)))


class _Rule:
    __slots__ = ("admitted", "allow", "first_segs", "index", "methods", "paths", "ports", "query", "text")

    def __init__(self, rule: EgressRule):
        self.index = rule.index
        self.allow = rule.action == "allow"
        fold = not self.allow
        self.ports = frozenset(rule.ports) if rule.ports is not None else _ANY_PORT
        self.methods = frozenset(rule.methods) if rule.methods is not None else None
        self.query = _compile_query(rule.query, fold)
        self.text = rule.describe()
        self.admitted = _admitted(rule)
        self.paths = None
        self.first_segs: frozenset[str] | None = None
        if rule.paths is not None:
            self.paths = [
                (
                    compile_path_glob(p.path, ignore_case=fold).match,
                    frozenset(p.methods) if p.methods is not None else None,
                    _compile_query(p.query, fold),
                )
                for p in rule.paths
            ]
            segs = {p.path[1:].split("/", 1)[0].lower() for p in rule.paths}
            if not any("*" in s for s in segs):
                self.first_segs = frozenset(segs)

    def matches(self, method: str, port: int, path: str, qp: tuple) -> bool:
        if port not in self.ports or (self.methods is not None and method not in self.methods):
            return False
        if self.query and not _query_ok(self.query, qp, self.allow):
            return False
        if self.paths is None:
            return True
        for match, methods, query in self.paths:
            if (
                (methods is None or method in methods)
                and match(path)
                and (not query or _query_ok(query, qp, self.allow))
            ):
                return True
        return False

    def method_free(self, port: int, path: str, qp: tuple) -> bool | None:
        """None if the rule matches no method of this request; True if it matches every method;
        False if it matches only some."""
        if port not in self.ports or (self.query and not _query_ok(self.query, qp, self.allow)):
            return None
        if self.paths is None:
            return self.methods is None
        hit = None
        for match, methods, query in self.paths:
            if match(path) and (not query or _query_ok(query, qp, self.allow)):
                if self.methods is None and methods is None:
                    return True
                hit = False
        return hit


def _compile_query(query: tuple, fold: bool = False) -> tuple:
    return tuple(
        (name.lower() if fold else name, tuple(compile_value_glob(g, fold).match for g in globs))
        for name, globs in query
    )


def _deep(value: str) -> list[str]:
    """A query value and its further percent-decodings (what a server decoding twice reads)."""
    out = [value]
    for _ in range(3):
        if "%" not in value:
            break
        try:
            value = parse_query("x=" + value.replace("+", "%2B"))[0][1]
        except (BadRequest, IndexError):
            break
        out.append(value)
    return out


def _query_ok(matchers: tuple, parses: tuple, allow: bool) -> bool:
    """Allow rules: in every parse, every matcher's parameter is present and all its values match.
    Deny rules (fail closed): in some parse, every matcher's parameter (any case) has a value, at any
    depth of decoding, that matches."""
    if allow:
        for pairs in parses:
            for name, globs in matchers:
                values = [v for k, v in pairs if k == name]
                if not values or not all(any(g(v) for g in globs) for v in values):
                    return False
        return True
    for pairs in parses:
        if all(
            any(k.lower() == name and any(g(d) for d in _deep(v) for g in globs) for k, v in pairs)
            for name, globs in matchers
        ):
            return True
    return False


def _seg(path: str) -> str:
    return path[1:].split("/", 1)[0].lower()


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
        self._route_admitted = {
            r.index: _networks(tuple(dict.fromkeys((*_ip_of(r.backend.host), *r.backend.addresses))))
            for r in policy.routes
        }

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

    def _candidates(self, hi: HostInfo, paths: tuple[str, ...]) -> tuple[int, ...] | list[int]:
        generic, by_seg = self._plan(hi)
        if not by_seg:
            return generic
        if len(paths) == 1:
            return by_seg.get(_seg(paths[0]), generic)
        found = set(generic)
        for p in paths:
            found.update(by_seg.get(_seg(p), ()))
        return sorted(found)

    def _first(
        self, method: str, hi: HostInfo, port: int, path: str, denies: tuple[str, ...], qp: tuple
    ) -> int | None:
        """The first rule that decides `method` on `path`: an allow rule matching `path`, or a deny
        rule matching any of `denies` (the readings of the request's path, `path` among them)."""
        rules = self._rules
        if len(denies) == 1:
            for i in self._candidates(hi, denies):
                if rules[i].matches(method, port, path, qp):
                    return i
            return None
        for i in self._candidates(hi, (path, *denies)):
            r = rules[i]
            if r.allow:
                if r.matches(method, port, path, qp):
                    return i
            elif any(r.matches(method, port, d, qp) for d in denies):
                return i
        return None

    def _allowed(self, idx: int | None) -> bool:
        return idx is not None and self._rules[idx].allow

    def _prepare(self, req: RequestInfo) -> tuple:
        """Normalise a request; raises `BadRequest`."""
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
        qp = (parse_query(query), parse_query(query, "&;")) if self._needs_query else ((), ())
        must, denies = path_forms(path)
        return method, hi, scheme, port, path, query, qp, must, denies

    def decide(self, req: RequestInfo) -> Decision:
        """Decide one request. Never raises for a malformed request: that is a 400 decision."""
        try:
            method, hi, scheme, port, path, query, qp, must, denies = self._prepare(req)
            overrides = override_methods(req.headers, query)
            if req.body:
                overrides += [m for m in body_override_methods(req.headers, req.body) if m not in overrides]
        except BadRequest as exc:
            return self._bad(req, exc)
        idx = self._first(method, hi, port, path, denies, qp)
        reason = ""
        if self._allowed(idx):
            for form, why in must:
                idx2 = self._first(method, hi, port, form, denies, qp)
                if not self._allowed(idx2):
                    idx, reason = idx2, f"{why} ({form}) is not allowed"
                    break
        if self._allowed(idx):
            for m in overrides:
                if m == method:
                    continue
                for form in (path, *(f for f, _ in must)):
                    idx2 = self._first(m, hi, port, form, denies, qp)
                    if not self._allowed(idx2):
                        idx, reason = (
                            idx2,
                            f"method override to {m} (X-HTTP-Method-Override or _method) is not allowed",
                        )
                        break
                if reason:
                    break
        return self._decision(idx, reason, method, scheme, hi, port, path)

    def _decision(self, idx: int | None, reason: str, method: str, scheme: str, hi: HostInfo, port: int,
                  path: str) -> Decision:
        allowed = self._allowed(idx)
        rule = self._rules[idx].text if idx is not None else NO_RULE
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
            admitted=self._admitted(idx, allowed, audit, hi, port),
        )

    def _admitted(self, idx: int | None, allowed: bool, audit: bool, hi: HostInfo, port: int) -> tuple:
        """The allowing rule's address exceptions; for an audit-allowed request, those of the allow
        rules for its host and port (the rules one would widen to allow it)."""
        if allowed and idx is not None:
            return self._rules[idx].admitted
        if not audit:
            return ()
        generic, by_seg = self._plan(hi)
        cands = sorted(set(generic).union(*by_seg.values())) if by_seg else generic
        nets = [n for i in cands if port in self._rules[i].ports for n in self._rules[i].admitted]
        return tuple(dict.fromkeys(nets))

    def _bad(self, req: RequestInfo, exc: BadRequest) -> Decision:
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

    def decide_connect(self, host: str, port: int) -> Decision:
        """The decision for a CONNECT to `host:port` that `host_may_be_allowed` refused: method
        "CONNECT", no path, the deny rule that covers every path of it (or no rule), host-level
        variants. A malformed host is a 400 decision."""
        try:
            hi = normalize_host(host)
        except BadRequest as exc:
            return self._bad(RequestInfo("CONNECT", "https", host, port, ""), exc)
        idx = self._first("GET", hi, port, "/", ("/",), ((), ()))
        if self._allowed(idx):
            idx = None  # `/` is not the question: no allow rule covers every request of the tunnel
        reason = f"no rule allows any request to {hi.value}:{port}"
        return self._decision(idx, reason, "CONNECT", "https", hi, port, "")

    def any_method_allowed(self, req: RequestInfo) -> bool:
        """True if every method would be allowed on this request's host, port, path and query, so no
        method override (header, query or body) could change the decision. False for a malformed
        request. The proxy buffers a form/JSON body to check it only where this is False."""
        try:
            _, hi, _, port, path, _, qp, must, denies = self._prepare(req)
        except BadRequest:
            return False
        rules = self._rules
        for form in (path, *(f for f, _ in must)):
            free = False
            for i in self._candidates(hi, (form, *denies)):
                r = rules[i]
                if r.allow:
                    hit = r.method_free(port, form, qp)
                else:
                    hits = [r.method_free(port, d, qp) for d in denies]
                    hit = None if all(h is None for h in hits) else any(hits)
                if hit is None:
                    continue
                if not r.allow:
                    return False  # some method is denied here
                if hit:
                    free = True
                    break
            if not free:
                return False
        return True

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

    def route_admits(self, route: InferenceRoute, address: str) -> bool:
        """True if inference `route` names `address` (its backend URL's IP, or its backend
        `addresses`): only then may a routed request reach a loopback, link-local or own address."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        nets = self._route_admitted.get(route.index, ())
        return any(ip.version == n.version and ip in n for n in nets)

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


def _ip_of(host: str) -> tuple[str, ...]:
    try:
        return (str(ipaddress.ip_address(host)),)
    except ValueError:
        return ()
