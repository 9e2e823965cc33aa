"""`network.limits` of a policy: request size limits the proxy applies to this policy's callers.

Only `max_body` (bytes of one request body; the proxy's `--max-body` when absent). The request line
and header limits stay the proxy's: they apply before the caller's policy is known.
Validation only; it must never do I/O.
"""

from __future__ import annotations

from typing import Any

from ._model import NetworkLimits
from ._validator import SIZE, SIZE_UNITS, Loc, Validator, is_int, type_name, val_loc

LIMIT_KEYS = ("max_body",)
MIN_BODY = 1024
_EXAMPLE = 'limits:\n  max_body: "1Gi"'


def parse_network_limits(v: Validator, node: Any, loc: Loc) -> NetworkLimits:
    """`network.limits` -> NetworkLimits; errors go to `v` (file, line, field, what to write)."""
    if node is None or not v.mapping(node, "network.limits", loc, LIMIT_KEYS, _EXAMPLE):
        return NetworkLimits()
    if "max_body" not in node:
        return NetworkLimits()
    raw = node["max_body"]
    size: int | None = None
    if is_int(raw):
        size = int(raw)
    elif isinstance(raw, str) and (m := SIZE.match(raw.strip())):
        size = int(float(m.group(1)) * SIZE_UNITS[m.group(2)])
    if size is None or size < MIN_BODY:
        v.error(val_loc(node, "max_body", loc), "network.limits.max_body",
                f"expected a size of at least 1Ki, got {type_name(raw)}",
                "bytes, or a number with a unit: K, M, G, T (x1000) or Ki, Mi, Gi, Ti (x1024)",
                'max_body: "1Gi"')
        return NetworkLimits()
    return NetworkLimits(max_body=size)
