"""`TrafficMonitor`: a live, filterable table of the proxied requests of one sandbox, with counts.

Columns: time, method, host, path, decision, rule, status, bytes, latency. Only the sandbox now called
`sandbox` counts: records of an earlier sandbox of that name are never shown. Reads flows, paged by
`seq`, through `jupyter_openshell.magics.ops.ops_for` (the policy service, or the kernel broker inside an
OpenShell kernel). It must never show records of another sandbox.
"""

from __future__ import annotations

import html
import time
from collections import deque
from typing import Any

import ipywidgets as widgets

from jupyter_openshell.magics.ops import ops_for

from ._poller import Poller

COLORS = {"allow": "#1b5e20", "deny": "#b71c1c", "audit-allow": "#e65100"}


def _row(r: dict) -> str:
    e = html.escape
    ts = time.strftime("%H:%M:%S", time.localtime(float(r.get("ts") or 0)))
    decision = str(r.get("decision") or "")
    size = (r.get("bytes_in") or 0) + (r.get("bytes_out") or 0)
    latency = r.get("duration_ms")
    return (
        f"<tr><td>{ts}</td><td>{e(str(r.get('method') or ''))}</td><td>{e(str(r.get('host') or ''))}</td>"
        f"<td>{e(str(r.get('path') or ''))}</td>"
        f'<td style="color:{COLORS.get(decision, "inherit")}"><b>{e(decision)}</b></td>'
        f"<td>{e(str(r.get('rule') or ''))}</td><td>{e(str(r.get('status') or ''))}</td>"
        f"<td>{size}</td><td>{'' if latency is None else f'{float(latency):.0f} ms'}</td></tr>"
    )


class TrafficMonitor(widgets.VBox):
    """TrafficMonitor(sandbox=None, interval=1.0, rows=50): live table of a sandbox's requests.

    `sandbox` defaults to the kernel's own sandbox inside an OpenShell kernel.
    """

    def __init__(self, sandbox: str | None = None, interval: float = 1.0, rows: int = 50, **kwargs: Any):
        self.ops = ops_for(sandbox)
        self.records: deque[dict] = deque(maxlen=2000)
        self.rows = rows
        self._after: int | None = None  # the flow log cursor (a record's seq)
        self.counts = widgets.HTML()
        self.filter = widgets.Text(placeholder="filter host, path, method, rule", description="Filter")
        self.decision = widgets.Dropdown(
            options=["all", "allow", "deny", "audit-allow"], value="all", description="Decision"
        )
        self.table = widgets.HTML()
        self.filter.observe(lambda _: self.render(), "value")
        self.decision.observe(lambda _: self.render(), "value")
        title = widgets.HTML(f"<b>Traffic of sandbox {html.escape(str(self.ops.name))}</b>")
        super().__init__(
            [title, self.counts, widgets.HBox([self.filter, self.decision]), self.table], **kwargs
        )
        self.refresh()
        self._poller = Poller(self.refresh, interval, self._error)
        self._poller.start()

    def refresh(self) -> None:
        page = self.ops.flow_page(after=self._after, limit=500 if self._after is None else 1000)
        fresh = page["flows"]
        self._after = page["next_after"]
        if fresh:
            newest = fresh[-1].get("sandbox_created")
            if self.records and self.records[-1].get("sandbox_created") != newest:
                self.records.clear()  # the sandbox was created again under its name: only the new one
            fresh = [r for r in fresh if r.get("sandbox_created") == newest]
        if fresh or not self.table.value:
            self.records.extend(fresh)
            self.render()

    def visible(self) -> list[dict]:
        needle = self.filter.value.strip().lower()
        out = []
        for r in self.records:
            if self.decision.value != "all" and r.get("decision") != self.decision.value:
                continue
            hay = " ".join(str(r.get(k) or "") for k in ("method", "host", "path", "rule", "status")).lower()
            if needle and needle not in hay:
                continue
            out.append(r)
        return out

    def render(self) -> None:
        allowed = sum(1 for r in self.records if r.get("decision") == "allow")
        denied = sum(1 for r in self.records if r.get("decision") == "deny")
        audited = sum(1 for r in self.records if r.get("decision") == "audit-allow")
        self.counts.value = (
            f'<span style="color:{COLORS["allow"]}">allowed {allowed}</span> &middot; '
            f'<span style="color:{COLORS["deny"]}">denied {denied}</span> &middot; '
            f'<span style="color:{COLORS["audit-allow"]}">audit-allowed {audited}</span>'
        )
        rows = "".join(_row(r) for r in reversed(self.visible()[-self.rows :]))
        head = (
            "<tr><th>time</th><th>method</th><th>host</th><th>path</th><th>decision</th><th>rule</th>"
            "<th>status</th><th>bytes</th><th>latency</th></tr>"
        )
        self.table.value = f"<table>{head}{rows or '<tr><td colspan=9>no requests yet</td></tr>'}</table>"

    def _error(self, exc: Exception) -> None:
        self.counts.value = f"<b>traffic unavailable:</b> {html.escape(str(exc))}"

    def close(self) -> None:
        self._poller.stop()
        super().close()
