"""Session-wide test setup: an isolated, private state directory for every test run, torn down at the end.

Everything a session creates lives below one base directory `/tmp/openshell-test-<random>/` (0711):
`state/` (0700) is `OPENSHELL_STATE_DIR`; `scratch_dir()` (fixture `scratch`) makes further directories
there (e.g. the home and state directory of an unprivileged user). At session end every proxy and
sandbox started under the base is stopped through the project's own APIs (`ProxyClient.stop`,
`Backend.destroy`/`cleanup`), then any process still naming the base is killed, and the base is
removed. OPENSHELL_KEEP_PROXY=1: a proxy a test's sandbox started is not stopped each time a test
removes its last sandbox. It must never point tests at the developer's real state directory, nor touch
processes or directories of another session.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

_BASE = Path(tempfile.mkdtemp(prefix="openshell-test-", dir="/tmp"))
_BASE.chmod(0o711)  # an unprivileged test user may reach its own scratch directory below it
_STATE_ROOT = _BASE / "state"
_STATE_ROOT.mkdir(mode=0o700)
os.environ["OPENSHELL_STATE_DIR"] = str(_STATE_ROOT)
# A proxy started for a sandbox stops with the last one; tests create and remove sandboxes all the time,
# so the session's proxy is kept (tests/runtime/test_proxy_lifecycle.py checks the default, without this).
os.environ["OPENSHELL_KEEP_PROXY"] = "1"


def scratch_dir(prefix: str, owner: int | None = None) -> Path:
    """A fresh directory below the session's base, removed (with whatever it started) at session end."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=_BASE))
    if owner is not None:
        os.chown(path, owner, owner)
    return path


def _state_dirs() -> list[Path]:
    """Every state directory below the base: the session's own and those of scratch users."""
    found = {_STATE_ROOT}
    for marker in ("run/proxy.json", "sandboxes"):
        with contextlib.suppress(OSError):
            found.update(p.parents[len(Path(marker).parts) - 1] for p in _BASE.glob(f"**/{marker}"))
    return sorted(found)


def _stop_state(state: Path) -> None:
    from jupyter_openshell.kernel.pool import shutdown_pools
    from jupyter_openshell.kernel.session import cleanup_stale
    from jupyter_openshell.proxy import ProxyClient
    from jupyter_openshell.runtime import available_backends, get_backend

    previous = os.environ.get("OPENSHELL_STATE_DIR")
    os.environ["OPENSHELL_STATE_DIR"] = str(state)
    try:
        if state == _STATE_ROOT:
            shutdown_pools()
            with contextlib.suppress(Exception):
                cleanup_stale()  # kernel sandboxes whose test died before destroying them
        if (state / "sandboxes").is_dir():
            for name in available_backends():
                with contextlib.suppress(Exception):
                    backend = get_backend(name)
                    for info in backend.list():
                        with contextlib.suppress(Exception):
                            backend.destroy(info.name)
                    backend.cleanup()  # shims and containers whose record a crashed test lost
        with contextlib.suppress(Exception):
            ProxyClient(state).stop()
    finally:
        if previous is None:
            os.environ.pop("OPENSHELL_STATE_DIR", None)
        else:
            os.environ["OPENSHELL_STATE_DIR"] = previous


def _naming_base() -> list[int]:
    """Pids of processes whose command line or environment names the base (what the APIs missed)."""
    needle = str(_BASE).encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        for what in ("cmdline", "environ"):
            try:
                if needle in Path(f"/proc/{entry}/{what}").read_bytes():
                    pids.append(int(entry))
                    break
            except OSError:
                continue
    return pids


def pytest_sessionfinish(session, exitstatus) -> None:
    for state in _state_dirs():
        _stop_state(state)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _naming_base()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while pids and _naming_base() and time.monotonic() < deadline:
            time.sleep(0.05)
    shutil.rmtree(_BASE, ignore_errors=True)


@pytest.fixture(scope="session")
def state_dir() -> Path:
    """The state directory shared by the whole test session."""
    return _STATE_ROOT


@pytest.fixture(scope="session")
def scratch():
    """`scratch(prefix, owner=None) -> Path`: see `scratch_dir`."""
    return scratch_dir
