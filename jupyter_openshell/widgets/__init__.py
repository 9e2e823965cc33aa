"""ipywidgets 8 widgets (standard widgets only, no custom JavaScript, so they render in JupyterLab and
Notebook 7): `TrafficMonitor`, `PolicyPanel`, `GpuStatus`. Imported lazily so that the package stays light.
Widgets must never hold or show a secret.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GpuStatus", "PolicyPanel", "TrafficMonitor"]


def __getattr__(name: str) -> Any:
    if name == "TrafficMonitor":
        from .traffic import TrafficMonitor

        return TrafficMonitor
    if name == "PolicyPanel":
        from .policy_panel import PolicyPanel

        return PolicyPanel
    if name == "GpuStatus":
        from .gpu import GpuStatus

        return GpuStatus
    raise AttributeError(name)
