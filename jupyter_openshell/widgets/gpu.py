"""`GpuStatus`: per GPU name, utilisation, memory, temperature and processes through NVML, refreshed on an
interval, with a clear "no GPU" state. It must never fail on a machine without a GPU.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from jupyter_openshell.services.gpu import gpu_snapshot

from ._poller import Poller

MIB = 1024 * 1024


def _bar(percent: float | None) -> str:
    if percent is None:
        return "n/a"
    p = max(0, min(100, int(percent)))
    return (
        f'<div style="width:120px;background:#eee;display:inline-block"><div style="width:{p}%;'
        f'background:#43a047;height:10px"></div></div> {p}%'
    )


def render(snapshot: dict) -> str:
    if not snapshot.get("available"):
        detail = (snapshot.get("reason") or "").removeprefix("no GPU").lstrip(": ")
        said = f"<b>No GPU</b>: {html.escape(detail)}" if detail else "<b>No GPU</b> on this machine"
        return f'<div style="padding:6px;border:1px solid #ccc">{said}</div>'
    rows = []
    for g in snapshot["gpus"]:
        mem_pct = 100.0 * g["memory_used"] / g["memory_total"] if g.get("memory_total") else None
        procs = ", ".join(
            f"{html.escape(str(p['name']))} ({p['pid']}, {(p['memory_used'] or 0) // MIB} MiB)"
            for p in g.get("processes") or []
        )
        temp = f"{g['temperature_c']} &deg;C" if g.get("temperature_c") is not None else "n/a"
        rows.append(
            f"<tr><td>{g['index']}</td><td>{html.escape(g['name'])}</td><td>{_bar(g.get('utilization_gpu'))}</td>"
            f"<td>{_bar(mem_pct)} {g['memory_used'] // MIB}/{g['memory_total'] // MIB} MiB</td>"
            f"<td>{temp}</td><td>{procs or '-'}</td></tr>"
        )
    head = "<tr><th>#</th><th>GPU</th><th>utilisation</th><th>memory</th><th>temp</th><th>processes</th></tr>"
    driver = html.escape(str(snapshot.get("driver")))
    return f"<table>{head}{''.join(rows)}</table><small>driver {driver}</small>"


class GpuStatus(widgets.VBox):
    """GpuStatus(interval=2.0): a live NVML view; `.snapshot` holds the last reading."""

    def __init__(self, interval: float = 2.0, **kwargs: Any):
        self.view = widgets.HTML()
        self.snapshot: dict = {}
        super().__init__([widgets.HTML("<b>GPU status</b>"), self.view], **kwargs)
        self.refresh()
        self._poller = Poller(self.refresh, interval, self._error)
        self._poller.start()

    def refresh(self) -> None:
        self.snapshot = gpu_snapshot()
        self.view.value = render(self.snapshot)

    def _error(self, exc: Exception) -> None:
        self.view.value = f"<b>GPU status failed:</b> {html.escape(str(exc))}"

    def close(self) -> None:
        self._poller.stop()
        super().close()
