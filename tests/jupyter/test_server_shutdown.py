"""Stopping Jupyter stops its kernels' sandboxes: a real JupyterLab server process (without the openshell
server extension, as a plain `jupyter lab` with the kernelspec runs) with an OpenShell kernel and a warm
pool sandbox, stopped by SIGINT (Ctrl-C without a terminal: KeyboardInterrupt, no kernel shutdown by
Jupyter) and by SIGTERM, leaves no sandbox and no sandbox process. Killed with SIGKILL it cannot clean
up: `openshell sandbox gc` then finds the orphans by their dead owner and says what it removed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jupyter_openshell.runtime import get_backend
from jupyter_openshell.testing.jupyter import JupyterServer


def _owned_by(pid: int) -> dict:
    """{name: shim pid} of the running sandboxes whose owner is process `pid`."""
    return {
        i.name: i.details["pid"]
        for i in get_backend().list()
        if (i.details.get("owner") or {}).get("pid") == pid and i.state == "running"
    }


def _server_with_kernel(tmp_path: Path, workspace: Path) -> tuple[JupyterServer, dict]:
    server = JupyterServer(tmp_path, workspace, pool_size=1).start()
    try:
        server.start_kernel()
        deadline = time.monotonic() + 60
        while len(_owned_by(server.proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)  # the kernel's sandbox, then the warm pool's
        owned = _owned_by(server.proc.pid)
        assert len(owned) == 2, (owned, server.log()[-3000:])
    except BaseException:
        server.stop()
        raise
    return server, owned


def _sandbox_processes(state: Path, names: list[str]) -> list[int]:
    """Host pids whose environment marks them as a process of one of these sandboxes (their shims)."""
    marks = [f"OPENSHELL_SANDBOX_DIR={state}/sandboxes/{n}".encode() for n in names]
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(m in environ for m in marks):
                found.append(int(entry))
    return found


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stopping_the_server_stops_its_kernel_sandboxes(tmp_path, workspace, state_dir, sig):
    server, owned = _server_with_kernel(tmp_path, workspace)
    assert _sandbox_processes(state_dir, list(owned))  # (the probe sees them while they run)
    server.proc.send_signal(sig)
    try:
        assert server.proc.wait(60) == 0, server.log()[-3000:]
    finally:
        server.stop()
    assert not set(owned) & {i.name for i in get_backend().list()}, server.log()[-3000:]
    assert _sandbox_processes(state_dir, list(owned)) == []


def test_gc_removes_the_kernel_sandboxes_of_a_killed_server(tmp_path, workspace, state_dir):
    server, owned = _server_with_kernel(tmp_path, workspace)
    pid = server.proc.pid
    server.proc.kill()
    server.proc.wait()
    # control: killed, the server could not clean up; the orphans still run
    left = {i.name: i for i in get_backend().list() if i.name in owned}
    assert set(left) == set(owned) and all(i.state == "running" for i in left.values())
    assert all(i.details["owner"] == {"pid": pid, "alive": False} for i in left.values())
    done = subprocess.run([str(Path(sys.executable).parent / "openshell"), "sandbox", "gc"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for name in owned:
        assert f"removed sandbox {name}: its owner, process {pid}, is gone" in done.stdout, done.stdout
    assert not set(owned) & {i.name for i in get_backend().list()}
    assert _sandbox_processes(state_dir, list(owned)) == []


def test_gc_leaves_the_kernel_channels_of_another_state_directory_alone(state_dir):
    """As root every state directory's kernels share one channel directory: a dead one of another state
    directory is not this gc's to remove (its sandbox lives elsewhere). Control: the same one of this
    state directory is removed."""
    from jupyter_openshell.kernel.session import cleanup_stale, kernels_dir

    homes = {}
    for who, state in (("foreign", "/nonexistent-other-state"), ("ours", str(state_dir))):
        home = kernels_dir() / f"test-{who}-{os.getpid()}"
        home.mkdir(mode=0o711)
        (home / "sandbox").write_text(f"kernel-{who}-{os.getpid()}")  # no broker answers: its host is gone
        (home / "state").write_text(state)
        homes[who] = home
    try:
        cleaned = cleanup_stale()
        assert f"kernel-ours-{os.getpid()}" in cleaned and not homes["ours"].exists()
        assert f"kernel-foreign-{os.getpid()}" not in cleaned and homes["foreign"].exists()
    finally:
        for home in homes.values():
            if home.exists():
                for child in home.iterdir():
                    child.unlink()
                home.rmdir()
