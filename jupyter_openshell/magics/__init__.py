"""IPython extension of jupyter-openshell: magics, and in an OpenShell kernel the denial notices (after
the cell, or before its traceback when it failed).

`load_ipython_extension` is called by `%load_ext jupyter_openshell`. It must never make the kernel fail to
start: a missing proxy or broker only disables the notices.
"""

from __future__ import annotations

import time
from typing import Any


def load_ipython_extension(ipython: Any) -> None:
    from .magics import OpenShellMagics
    from .ops import inside_sandbox, ops_for

    ipython.register_magics(OpenShellMagics(ipython))
    if inside_sandbox():
        from .denials import DenialWatcher

        watcher = DenialWatcher(ops_for(None), None)
        ipython.events.register("pre_run_cell", lambda info: watcher.mark(time.time()))
        ipython.events.register("post_run_cell", lambda result: watcher.check())
        ipython.set_custom_exc((Exception,), watcher.before_traceback)
