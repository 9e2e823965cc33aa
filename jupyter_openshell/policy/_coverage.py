"""Which egress rule covers which: `rule_covers(a, b)` (conservatively: True only if `a` certainly matches
every request `b` matches) and `shadowed(rules)`, the rules an earlier one makes unreachable or redundant
(first match wins), for the parser's warnings. Pure functions of `EgressRule`s; it must never say a rule
covers another when it might not.
"""

from __future__ import annotations

import ipaddress

from ._glob import path_covers
from ._model import EgressRule


def _first_segments(rule: EgressRule) -> frozenset[str] | None:
    """Literal first path segments a rule can match, or None if it can match any."""
    if rule.paths is None:
        return None
    segs = frozenset(p.path[1:].split("/", 1)[0] for p in rule.paths)
    return None if any("*" in s for s in segs) else segs


def shadowed(rules: tuple[EgressRule, ...]) -> list[tuple[EgressRule, EgressRule]]:
    """(later, first earlier rule covering it) pairs. Only rules that could cover each other are
    compared: broad hosts (none, wildcard, CIDR) with everything; an exact host with the same host and
    an overlapping first path segment."""
    broad: list[int] = []
    by_host: dict[str, dict[str | None, list[int]]] = {}
    found = []
    for j, b in enumerate(rules):
        b_segs = _first_segments(b)
        cands = list(broad)
        exact = b.host is not None and "*" not in b.host and "/" not in b.host
        if exact:
            buckets = by_host.get(b.host, {})
            cands += buckets.get(None, [])
            for seg in b_segs or ():
                cands += buckets.get(seg, [])
        for i in sorted(set(cands)):
            if rule_covers(rules[i], b):
                found.append((b, rules[i]))
                break
        if exact:
            buckets = by_host.setdefault(b.host, {})
            for seg in b_segs if b_segs is not None else (None,):
                buckets.setdefault(seg, []).append(j)
        else:
            broad.append(j)
    return found


def _host_covers(a: str | None, b: str | None) -> bool:
    if a is None:
        return True
    if b is None:
        return False
    if a == b:
        return True
    if a.startswith("**."):
        return b.endswith(a[2:])
    if a.startswith("*."):
        return not b.startswith("*") and "." in b and b.split(".", 1)[1] == a[2:]
    if "/" in a and "/" not in b and "*" not in b:
        try:
            return ipaddress.ip_address(b) in ipaddress.ip_network(a)
        except ValueError:
            return False
    return False


def _ports_cover(a: tuple[int, ...] | None, b: tuple[int, ...] | None) -> bool:
    return a is None or (b is not None and set(b) <= set(a))


def _effective(
    rule_methods: tuple[str, ...] | None, entry_methods: tuple[str, ...] | None
) -> set[str] | None:
    if rule_methods is None:
        return None if entry_methods is None else set(entry_methods)
    if entry_methods is None:
        return set(rule_methods)
    return set(rule_methods) & set(entry_methods)


def _methods_cover(a: set[str] | None, b: set[str] | None) -> bool:
    return a is None or (b is not None and b <= a)


def rule_covers(a: EgressRule, b: EgressRule) -> bool:
    """Conservative: True only if rule `a` certainly matches every request rule `b` matches."""
    if not _host_covers(a.host, b.host) or not _ports_cover(a.ports, b.ports):
        return False
    if a.query and a.query != b.query:
        return False
    a_entries = (
        [(p.path, _effective(a.methods, p.methods), p.query) for p in a.paths]
        if a.paths is not None
        else [("/**", _effective(a.methods, None), ())]
    )
    b_entries = (
        [(p.path, _effective(b.methods, p.methods), p.query) for p in b.paths]
        if b.paths is not None
        else [("/**", _effective(b.methods, None), ())]
    )
    for bp, bm, bq in b_entries:
        if not any(
            path_covers(ap, bp) and _methods_cover(am, bm) and (not aq or aq == bq)
            for ap, am, aq in a_entries
        ):
            return False
    return True
