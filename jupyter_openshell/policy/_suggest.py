"""`suggest(flow_records)`: a minimal policy (YAML text) that allows exactly the observed traffic,
with ids in paths (numbers, UUIDs, hex and token-like segments) collapsed to `*`.

It must never widen past what was observed except by that id collapsing (and `/**` when one
prefix has too many distinct paths), and never include inference-routed flows or malformed ones.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from ._errors import BadRequest
from ._normalize import DEFAULT_PORTS, normalize_host, normalize_method, normalize_path

MAX_PATHS_PER_PREFIX = 8
_ID = re.compile(
    r"""(\d+
       |[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}
       |(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}
       |(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{16,}
       |\d{4}-\d{2}-\d{2}
    )\Z""",
    re.VERBOSE,
)


def collapse_path(path: str) -> str:
    """`/v1/users/42/posts/9f1c...` -> `/v1/users/*/posts/*`."""
    return "/".join("*" if seg and _ID.match(seg) else seg for seg in path.split("/"))


def _flow(seq: list[str]) -> CommentedSeq:
    s = CommentedSeq(seq)
    s.fa.set_flow_style()
    return s


def suggest(flow_records: Iterable[dict[str, Any]]) -> str:
    """Minimal policy YAML (enforce mode, final deny) allowing the observed flows."""
    hosts: dict[tuple[str, int], dict[str, set[str]]] = {}
    count = 0
    for rec in flow_records:
        if not isinstance(rec, dict) or rec.get("route") or rec.get("status") == 400:
            continue
        try:
            method = normalize_method(str(rec.get("method", "")))
            host = normalize_host(str(rec.get("host", ""))).value
            path = normalize_path(str(rec.get("path") or "/"))
            port = int(rec.get("port") or (443 if rec.get("scheme") == "https" else 80))
        except (BadRequest, ValueError):
            continue
        count += 1
        hosts.setdefault((host, port), {}).setdefault(collapse_path(path), set()).add(method)
    egress = CommentedSeq()
    for (host, port), paths in sorted(hosts.items()):
        by_prefix: dict[str, list[str]] = {}
        for p in paths:
            by_prefix.setdefault(p.split("/")[1] if p != "/" else "", []).append(p)
        merged: dict[str, set[str]] = {}
        for prefix, members in by_prefix.items():
            if len(members) > MAX_PATHS_PER_PREFIX and prefix and "*" not in prefix:
                merged.setdefault(f"/{prefix}/**", set()).update(*(paths[m] for m in members))
            else:
                for m in members:
                    merged.setdefault(m, set()).update(paths[m])
        rule = CommentedMap()
        rule["host"] = host
        if port not in DEFAULT_PORTS:
            rule["port"] = port
        entries = CommentedSeq()
        for p in sorted(merged):
            entry = CommentedMap()
            entry["path"] = p
            entry["methods"] = _flow(sorted(merged[p]))
            entries.append(entry)
        rule["paths"] = entries
        rule["action"] = "allow"
        egress.append(rule)
    deny = CommentedMap()
    deny["action"] = "deny"
    egress.append(deny)
    doc = CommentedMap()
    doc["mode"] = "enforce"
    doc["network"] = CommentedMap(egress=egress)
    doc.yaml_set_start_comment(
        f"Suggested by `openshell policy suggest` from {count} observed requests.\n"
        "Review before use: ids in paths were collapsed to '*'."
    )
    y = YAML(typ="rt")
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 4096
    buf = io.StringIO()
    y.dump(doc, buf)
    return buf.getvalue()
