"""The narrowest allow rule for a request, as a dict and as YAML text (hints in 403 bodies,
`%policy allow`, `openshell policy explain`). Pure; it must never widen beyond the one request
(the one exception: a literal `*` in a path cannot be escaped in a glob, so it stays a wildcard)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from ._errors import BadRequest
from ._model import DEFAULT_PORTS
from ._normalize import normalize_host, normalize_method, normalize_path, split_host_port


def narrowest_rule(method: str, host: str, port: int, path: str) -> dict[str, Any]:
    """Rule dict allowing exactly `method` on `host:port` `path` (all already normalised)."""
    rule: dict[str, Any] = {"host": host}
    if port not in DEFAULT_PORTS:
        rule["port"] = port
    rule["paths"] = [{"path": path, "methods": [method]}]
    rule["action"] = "allow"
    return rule


def rule_for(method: str, url: str) -> dict[str, Any]:
    """The narrowest allow rule for `METHOD url`. Raises `BadRequest` if the URL cannot be evaluated."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadRequest(f"{url!r} is not an absolute http(s) URL")
    netloc = parts.netloc.rpartition("@")[2]
    host_text, port = split_host_port(netloc)
    host = normalize_host(host_text).value
    port = port or (443 if parts.scheme == "https" else 80)
    return narrowest_rule(normalize_method(method), host, port, normalize_path(parts.path or "/"))


def _scalar(v: Any) -> str:
    if v in ("allow", "deny"):
        return str(v)
    return json.dumps(v) if isinstance(v, str | list) else str(v)


def rule_yaml(rule: dict[str, Any], indent: str = "") -> str:
    """A rule dict as one YAML list item (block style; strings JSON-quoted, which YAML accepts)."""
    lines = []
    first = True
    for key, value in rule.items():
        prefix = indent + ("- " if first else "  ")
        first = False
        if key == "paths":
            lines.append(f"{prefix}paths:")
            for entry in value:
                sub = True
                for k, v in entry.items():
                    lines.append(f"{indent}    {'- ' if sub else '  '}{k}: {_scalar(v)}")
                    sub = False
        elif isinstance(value, dict):
            lines.append(f"{prefix}{key}: {json.dumps(value)}")
        else:
            lines.append(f"{prefix}{key}: {_scalar(value)}")
    return "\n".join(lines)
