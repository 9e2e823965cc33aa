"""jupyter-openshell: sandboxes for AI-agent code, governed by an L7 egress policy proxy.

This module is the small public API; the implementation lives in private submodules.
It must never import heavy dependencies (mitmproxy, jupyter_server) at import time:
`%load_ext jupyter_openshell` and the CLI must stay fast.
"""

from __future__ import annotations

__version__ = "0.1.0"


def load_ipython_extension(ipython):  # pragma: no cover - thin delegation
    """Entry point for `%load_ext jupyter_openshell`."""
    from .magics import load_ipython_extension as _load

    _load(ipython)


def _jupyter_server_extension_points():
    from .server.app import OpenShellExtension  # imported only when jupyter_server asks

    return [{"module": "jupyter_openshell.server.app", "app": OpenShellExtension}]


def _jupyter_labextension_paths():
    return []
