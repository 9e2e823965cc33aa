"""The shim of a local sandbox: `timeout -s KILL <lifetime>` (own session, as the sandbox's uid when we are
root) in front of bwrap. Spawning it, reading its readiness and bwrap's info, ending it (SIGKILL to its
process group, then waiting on pidfds until the PID namespace's init is gone, then the cgroups), the
registry of this process's shims (so that any backend instance reaps them), and finding shims whose record
a crashed CLI lost. It must never leave a shim as a zombie, nor kill a process it cannot tell is its own
(pid + start time).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from .. import paths
from . import _resources, _state

SHIM_MARK = "OPENSHELL_SANDBOX_DIR"

# Shims this process started, by host pid, whichever backend instance started them: any instance's
# destroy waits for its shim, and `reap` collects those that ended by themselves (timeout).
_SHIMS: dict[int, subprocess.Popen] = {}
_SHIMS_LOCK = threading.Lock()


def register(shim: subprocess.Popen) -> None:
    with _SHIMS_LOCK:
        _SHIMS[shim.pid] = shim


def _take(pid: int | None) -> subprocess.Popen | None:
    with _SHIMS_LOCK:
        return _SHIMS.pop(pid, None) if pid else None


def reap() -> None:
    """Collect the exit status of every shim this process started that has ended (no zombies)."""
    with _SHIMS_LOCK:
        for pid, shim in list(_SHIMS.items()):
            if shim.poll() is not None:
                del _SHIMS[pid]


def read_ready(fd: int, proc: subprocess.Popen, deadline: float) -> bool:
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            return os.read(fd, 64).startswith(b"ready")
        if proc.poll() is not None:
            return False
    return False


def spawn(cmd: Any, timeout: str, setpriv: str | None, limits: Any, name: str, uid: int) -> subprocess.Popen:
    """Start the shim of sandbox `name` running `cmd` (bwrap), its log in the sandbox's log; `setpriv`
    (root): the tool that drops to the sandbox's `uid`."""
    # `timeout` (0: none) is bwrap's parent, whose exit --die-with-parent watches: it must outlive
    # the CLI process that created the sandbox.
    lifetime = [timeout, "-s", "KILL", str(int(limits.timeout)) if limits.timeout else "0"]
    argv = [*lifetime, *cmd.args]
    if setpriv is not None:  # drops to the sandbox uid (Popen's user= would rule out vfork)
        ids = [f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        argv = [setpriv, *ids, *argv]
    layout = paths.layout()
    log_fd = os.open(
        layout.sandbox_log(name), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600
    )
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            pass_fds=cmd.fds,
            start_new_session=True,
            close_fds=True,
            cwd="/",
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", SHIM_MARK: str(layout.sandbox_dir(name))},
        )
    finally:
        os.close(log_fd)


def end(record: dict) -> None:
    """SIGKILL the shim's process group (bwrap dies with its parent, the PID namespace with bwrap),
    empty the cgroups, and wait until the namespace's init and the shim have exited."""
    pidfds = []
    for pid, started in (
        (record.get("child_pid"), record.get("child_start")),
        (record.get("pid"), record.get("pid_start")),
    ):
        if pid and _state.alive(pid, started):
            with contextlib.suppress(OSError):
                pidfds.append(os.pidfd_open(pid))
    if _state.alive(record.get("pid"), record.get("pid_start")):
        with contextlib.suppress(OSError):
            os.killpg(record["pid"], signal.SIGKILL)
    # The namespace's init exits only after every process of its namespace is gone: wait for that
    # (pidfds, no polling), then let the cgroups catch anything else.
    deadline = time.monotonic() + 5.0
    for fd in pidfds:
        select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        os.close(fd)
    shim = _take(record.get("pid"))
    if shim is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            shim.wait(5)
    enforcement = _resources.Enforcement.from_dict(record.get("enforcement") or {})
    enforcement.kill()
    enforcement.remove()


def read_info(fd: int) -> dict:
    data = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
        with contextlib.suppress(ValueError):
            return json.loads(data)
    with contextlib.suppress(ValueError):
        return json.loads(data or b"{}")
    return {}


def orphans(root: str) -> list[tuple[int, str]]:
    """(pid, sandbox dir) of shims of this state directory whose record is gone (a crashed CLI)."""
    found = []
    marker = f"{SHIM_MARK}={root}/".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        for var in environ.split(b"\0"):
            if var.startswith(marker):
                directory = var.split(b"=", 1)[1].decode()
                if not paths.layout().sandbox_record(os.path.basename(directory)).exists():
                    found.append((int(entry), directory))
    return found
