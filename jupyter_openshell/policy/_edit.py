"""Edit policy text while keeping the user's comments and layout (ruamel.yaml round-trip).

Used by `%policy allow/deny/mode`. Every result is validated before it is returned; this module
must never return text that does not parse as a valid policy.
"""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from ._keys import MODES
from ._parse import parse_policy


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 4096
    return y


def _dump(y: YAML, doc: Any) -> str:
    buf = io.StringIO()
    y.dump(doc, buf)
    return buf.getvalue()


def _commented(value: Any) -> Any:
    if isinstance(value, dict):
        m = CommentedMap()
        for k, v in value.items():
            m[k] = _commented(v)
        return m
    if isinstance(value, list | tuple):
        s = CommentedSeq(_commented(v) for v in value)
        if all(not isinstance(v, dict | list | tuple) for v in value):
            s.fa.set_flow_style()
        return s
    return value


def _is_default_deny(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and item.get("action") == "deny"
        and "host" not in item
        and not {"paths", "methods", "query", "port", "ports"} & set(item)
    )


def add_rule(text: str, rule: dict[str, Any], position: str | int = "before-default-deny") -> str:
    """Insert egress `rule` into policy `text`. `position`: "before-default-deny" (above a final
    hostless `- action: deny`, else at the end), "start", "end", or an index. Raises PolicyError if
    the result is invalid."""
    y = _yaml()
    doc = y.load(text) if text.strip() else None
    if doc is None:
        doc = CommentedMap()
    network = doc.get("network")
    if network is None:
        network = doc["network"] = CommentedMap()
    egress = network.get("egress")
    if egress is None:
        egress = network["egress"] = CommentedSeq()
    if position == "start":
        index = 0
    elif position == "end":
        index = len(egress)
    elif isinstance(position, int):
        index = max(0, min(position, len(egress)))
    elif position == "before-default-deny":
        index = len(egress)
        for i in range(len(egress) - 1, -1, -1):
            if _is_default_deny(egress[i]):
                index = i
                break
    else:
        raise ValueError(f"unknown position {position!r}: use before-default-deny, start, end or an index")
    egress.insert(index, _commented(rule))
    out = _dump(y, doc)
    parse_policy(out)
    return out


def set_mode(text: str, mode: str) -> str:
    """Set `mode` (enforce | audit) where the policy already sets it, else at the top. Validated."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    y = _yaml()
    doc = y.load(text) if text.strip() else None
    if doc is None:
        doc = CommentedMap()
    network = doc.get("network")
    if isinstance(network, dict) and "mode" in network:
        network["mode"] = mode
    elif "mode" in doc:
        doc["mode"] = mode
    else:
        doc.insert(0, "mode", mode)
    out = _dump(y, doc)
    parse_policy(out)
    return out
