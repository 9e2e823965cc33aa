"""ipywidgets 8 widgets (standard widgets only, no custom JavaScript, so they render in JupyterLab and
Notebook 7): `TrafficMonitor`, `PolicyPanel`, `GpuStatus`. Imported lazily so that the package stays light.
Widgets must never hold or show a secret.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__all__ = ["GpuStatus", "PolicyPanel", "TrafficMonitor"]
__getattr__ = lazy_exports(
    __name__, {"GpuStatus": ".gpu", "PolicyPanel": ".policy_panel", "TrafficMonitor": ".traffic"}
)
