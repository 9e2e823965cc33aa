"""Resource exhaustion and teardown attacks, as root and as an unprivileged user: fork, memory, disk
and fd bombs stay inside their limits while the proxy and a second sandbox keep answering; destroy
leaves no process behind (daemonised ones included); `kill -1` inside cannot touch the host; a
sandbox's wall-clock timeout ends it.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from jupyter_openshell.proxy import ProxyClient

from .conftest import processes_of_uid, processes_with

LIMITED = """\
network:
  egress:
    - action: deny
resources:
  cpu: 0.5
  memory: "96Mi"
  pids: 48
  disk: "16Mi"
"""

FORK_BOMB = """
import os, time
children = 0
try:
    while children < 100000:
        if os.fork() == 0:
            os.close(1); os.close(2)  # let the caller see EOF while the children live on
            time.sleep(30)
            os._exit(0)
        children += 1
except OSError as exc:
    print("stopped", children, exc.errno)
"""

MEMORY_BOMB = """
blocks = []
try:
    for _ in range(64):
        blocks.append(bytearray(8 << 20))  # up to 512 MiB, touched
    print("allocated", len(blocks) * 8, "MiB")
except MemoryError:
    print("memoryerror", len(blocks) * 8)
"""

FD_BOMB = """
fds = []
try:
    while len(fds) < 1000000:
        fds.append(open("/dev/null"))
except OSError as exc:
    print("stopped", len(fds), exc.errno)
"""


def test_fork_bomb_contained_and_neighbours_responsive(mode):
    bomb = mode.create(LIMITED)
    neighbour = mode.create()
    proc = mode.python(bomb, FORK_BOMB, timeout=120)
    assert "stopped" in proc.stdout, (proc.stdout, proc.stderr)
    children = int(proc.stdout.split()[1])
    assert children <= 48
    start = time.monotonic()
    assert mode.sh(neighbour, "echo alive").stdout.strip() == "alive"
    ProxyClient(mode.state).status()
    assert time.monotonic() - start < 10
    mode.rm(bomb)
    mode.rm(neighbour)


def test_memory_bomb_contained(mode):
    name = mode.create(LIMITED)
    proc = mode.python(name, MEMORY_BOMB, timeout=120)
    # cgroup: the OOM killer ends it (SIGKILL -> 137); rlimits: MemoryError well below 512 MiB.
    assert "allocated" not in proc.stdout
    assert proc.returncode == 137 or "memoryerror" in proc.stdout, (proc.returncode, proc.stdout, proc.stderr)
    assert mode.sh(name, "echo alive").stdout.strip() == "alive" or proc.returncode == 137
    mode.rm(name)


def test_disk_and_fd_bombs_contained(mode):
    name = mode.create(LIMITED)
    # (what was written: /tmp may also hold the read-only venv of a checkout that lives under /tmp)
    tmp = mode.sh(name, "for f in a b; do dd if=/dev/zero of=/tmp/$f bs=1M count=10 2>&1; done; "
                        "du -skc /tmp/a /tmp/b | tail -1")
    assert "No space left on device" in tmp.stdout  # the private /tmp is a 16 MiB tmpfs
    assert int(tmp.stdout.split()[-2]) <= 16 << 10
    ws = mode.python(name, "open('/workspace/big', 'wb').write(b'x' * (32 << 20))")
    # the 16 MiB workspace is full first (ENOSPC), else the file hits RLIMIT_FSIZE (EFBIG)
    assert ws.returncode != 0 and ("No space left" in ws.stderr or "File too large" in ws.stderr), ws.stderr
    fds = mode.python(name, FD_BOMB)
    assert "stopped" in fds.stdout
    assert int(fds.stdout.split()[1]) < 4096
    mode.rm(name)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "(gone)"


def test_destroy_leaves_no_process_even_daemonised(mode):
    name = mode.create()
    marker = f"{time.time_ns() % 10**9}.{uuid.uuid4().int % 10**6}"
    script = (
        f"(setsid sh -c 'trap \"\" HUP TERM; exec sleep {marker}' </dev/null >/dev/null 2>&1 &); "
        f"nohup sleep {marker} >/dev/null 2>&1 & echo started"
    )
    assert mode.sh(name, script).stdout.strip() == "started"
    time.sleep(0.2)
    assert len(processes_with(marker)) == 2
    record = mode.record(name)
    mode.rm(name)
    assert processes_with(marker) == []
    if mode.name == "root":  # (exited shims may linger a moment as zombies until init reaps them)
        left = processes_of_uid(record["uid"], live_only=True)
        assert left == [], [(pid, _cmdline(pid)) for pid in left]
    enforcement = record["enforcement"]
    for path in enforcement["paths"] if isinstance(enforcement, dict) else []:  # (local: its cgroups)
        assert not Path(path).exists()
    if record.get("container"):  # (docker: its container)
        import docker

        with pytest.raises(docker.errors.NotFound):
            docker.from_env().containers.get(record["container"])
    assert not (mode.state / "sandboxes" / name).exists()


def test_kill_all_inside_cannot_touch_host_or_neighbours(mode):
    victim = mode.create()
    neighbour = mode.create()
    proxy_pid = mode.proxy()["pid"]
    mode.sh(victim, "kill -9 -1; echo done")
    os.kill(proxy_pid, 0)  # still alive
    assert mode.sh(neighbour, "echo alive").stdout.strip() == "alive"
    mode.rm(victim)
    mode.rm(neighbour)


def test_wall_clock_timeout_ends_the_sandbox(mode):
    name = mode.create("network:\n  egress:\n    - action: deny\nresources:\n  timeout: 2\n")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        state = mode.cli("ls").stdout
        line = next(ln for ln in state.splitlines() if ln.startswith(name))
        if " exited " in line:
            break
        time.sleep(0.3)
    assert " exited " in line
    assert mode.sh(name, "true").returncode != 0
    mode.rm(name)
