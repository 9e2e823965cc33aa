"""IPython extension of jupyter-openshell: magics, and in an OpenShell kernel the denial notices (after
the cell, or before its traceback when it failed).

`load_ipython_extension` is called by `%load_ext jupyter_openshell`. It must never make the kernel fail to
start: a missing proxy or broker only disables the notices.
"""

from __future__ import annotations

import time
from typing import Any

_hooks: list[tuple[str, Any]] = []  # (event, callback) of this kernel's own denial notices


def load_ipython_extension(ipython: Any) -> None:
    from .magics import OpenShellMagics
    from .ops import inside_sandbox, ops_for

    ipython.register_magics(OpenShellMagics(ipython))
    if inside_sandbox():
        from .denials import DenialWatcher

        watcher = DenialWatcher(ops_for(None), None)
        _hooks[:] = [("pre_run_cell", lambda info: watcher.mark(time.time())),
                     ("post_run_cell", lambda result: watcher.check())]
        for event, callback in _hooks:
            ipython.events.register(event, callback)
        ipython.set_custom_exc((Exception,), watcher.before_traceback)


def host_shows_denials() -> None:
    """Called by the host in a `%%sandbox` kernel: the host cell shows the denials (with the host's hint),
    so this kernel stops showing its own, and leaves its tracebacks whole."""
    from IPython import get_ipython

    ipython = get_ipython()
    for event, callback in _hooks:
        ipython.events.unregister(event, callback)
    _hooks.clear()
    ipython.set_custom_exc((), None)
