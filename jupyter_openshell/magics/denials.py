"""Readable notices for requests the proxy denied during a cell: what, which rule, the magic allowing it.

Both paths use it: `%%sandbox` cells on the host, and every cell of an OpenShell kernel (a post_run_cell
hook that asks the kernel broker). It must never hide a denial because a library swallowed the 403.
"""

from __future__ import annotations

import html
from typing import Any

from IPython.display import display


def url_of(record: dict) -> str:
    scheme = record.get("scheme") or "http"
    port = record.get("port")
    default = {"http": 80, "https": 443}.get(scheme)
    host = record.get("host") or "?"
    netloc = host if port in (None, default) else f"{host}:{port}"
    return f"{scheme}://{netloc}{record.get('path') or '/'}"


def notice(record: dict, name: str | None) -> dict[str, str]:
    method = record.get("method") or "GET"
    url = url_of(record)
    rule = record.get("rule") or "no rule matched (default deny)"
    reason = record.get("reason") or ""
    fix = f"%policy allow {method} {url}" + (f" {name}" if name else "")
    text = f"OpenShell denied {method} {url}\n  rule: {rule}" + (f"\n  reason: {reason}" if reason else "")
    text += f"\n  to allow it, run: {fix}"
    e = html.escape
    markup = (
        '<div style="border-left:4px solid #c62828;padding:4px 8px;background:#fdecea">'
        f"<b>OpenShell denied</b> <code>{e(method)} {e(url)}</code><br>"
        f"rule: <code>{e(rule)}</code>"
        + (f"<br>reason: {e(reason)}" if reason else "")
        + f"<br>to allow it, run: <code>{e(fix)}</code></div>"
    )
    return {"text/plain": text, "text/html": markup}


class DenialWatcher:
    """Shows each new denial of one sandbox once; `ops.flows(since, limit)` (PolicyOps or RemoteOps)."""

    def __init__(self, ops: Any, name: str | None):
        self.ops, self.name = ops, name
        self.since = 0.0
        self.seen: set[str] = set()

    def mark(self, ts: float) -> None:
        if not self.since:
            self.since = ts

    def check(self) -> list[dict]:
        try:
            records = self.ops.flows(since=self.since or 1e-9, limit=500)
        except Exception:  # the proxy may be down; the cell's own error says enough then
            return []
        fresh = [r for r in records if r.get("decision") == "deny" and str(r.get("id")) not in self.seen]
        if records:
            self.since = max(self.since, *(float(r.get("ts") or 0) for r in records))
            self.seen = {str(r.get("id")) for r in records if float(r.get("ts") or 0) == self.since}
        for record in fresh:
            display(notice(record, self.name), raw=True)
        return fresh
