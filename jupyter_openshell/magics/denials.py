"""Readable notices for requests the proxy denied during a cell: what, which rule, the magic allowing it.

Both paths use it: `%%sandbox` cells on the host, and every cell of an OpenShell kernel (a post_run_cell
hook that asks the kernel broker). It must never hide a denial because a library swallowed the 403.
"""

from __future__ import annotations

import contextlib
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
    """Shows each new denial of one sandbox (its current instance) once, paging the flow log by `seq`;
    `ops.flow_page(after, limit)` (PolicyOps or RemoteOps)."""

    def __init__(self, ops: Any, name: str | None):
        self.ops, self.name = ops, name
        self.since = 0.0  # the first cell's start: used only while no cursor could be taken
        self.after: int | None = None

    def mark(self, ts: float) -> None:
        """A cell starts: the first time, take the log's cursor (denials before it are not shown)."""
        if not self.since:
            self.since = ts
        if self.after is None:
            with contextlib.suppress(Exception):  # the proxy may be down: check() uses the start time
                self.after = self.ops.flow_page(limit=0)["next_after"]

    def check(self) -> list[dict]:
        try:
            page = self.ops.flow_page(after=self.after, limit=500)
        except Exception:  # the proxy may be down; the cell's own error says enough then
            return []
        records = page["flows"]
        if self.after is None:
            records = [r for r in records if float(r.get("ts") or 0) >= self.since]
        self.after = page["next_after"]
        fresh = [r for r in records if r.get("decision") == "deny"]
        for record in fresh:
            display(notice(record, self.name), raw=True)
        return fresh
