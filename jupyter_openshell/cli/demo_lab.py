"""Run JupyterLab for `openshell demo` until the user stops it, and stop it so that nothing is left.

JupyterLab runs in its own session: Ctrl-C (or SIGTERM/SIGHUP) reaches only `openshell demo`, which asks
JupyterLab to stop (SIGTERM: it shuts its kernels and their sandboxes down), waits for it, and removes
any kernel sandbox a JupyterLab that died without stopping them left. With --no-browser the notebook's
URL (with the token) is printed once the server answers. It must never leave a kernel sandbox running.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from types import FrameType

from ..hostproc import popen

STOP_GRACE_S = 60.0  # JupyterLab shutting several kernels (and their sandboxes) down
STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _notebook_url(proc: subprocess.Popen, notebook: str, deadline: float) -> str | None:
    from jupyter_server.serverapp import list_running_servers

    while time.monotonic() < deadline and proc.poll() is None:
        for info in list_running_servers():
            if info.get("pid") == proc.pid:
                token = info.get("token")
                return f"{info['url'].rstrip('/')}/lab/tree/{notebook}" + (f"?token={token}" if token else "")
        time.sleep(0.2)
    return None


def _remove_orphans(pid: int) -> list[str]:
    """Destroy the sandboxes process `pid` (the stopped JupyterLab) owned and did not destroy."""
    from jupyter_openshell.runtime import get_backend

    backend, removed = get_backend(), []
    for info in backend.list():
        if (info.details.get("owner") or {}).get("pid") == pid:
            with contextlib.suppress(Exception):
                backend.destroy(info.name)
                removed.append(info.name)
    return removed


def serve(argv: list[str], notebook: str, print_url: bool) -> int:
    """Run JupyterLab (`argv`, see `hostproc`) until it exits or this process is asked to stop; its exit
    status."""
    proc = popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
    asked: list[int] = []

    def stop(sig: int, _frame: FrameType | None) -> None:
        if not asked:
            print("\nopenshell demo: stopping JupyterLab and its kernels' sandboxes ...", file=sys.stderr)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        asked.append(sig)

    previous = {sig: signal.signal(sig, stop) for sig in STOPS}
    try:
        if print_url:
            url = _notebook_url(proc, notebook, time.monotonic() + 120)
            if url and proc.poll() is None:
                print(f"openshell demo: open {url}", flush=True)
        while True:
            try:
                code = proc.wait(STOP_GRACE_S if asked else None)
                break
            except subprocess.TimeoutExpired:
                print("openshell demo: JupyterLab does not stop; killing it", file=sys.stderr)
                proc.kill()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for name in _remove_orphans(proc.pid):
        print(f"openshell demo: removed sandbox {name}, which JupyterLab left", file=sys.stderr)
    return 0 if asked else code
