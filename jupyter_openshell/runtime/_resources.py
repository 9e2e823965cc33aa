"""Resource limits for one sandbox: cgroup v2 (delegated), cgroup v1 (as root), else rlimits.

`plan(name, limits)` picks the strongest mechanism this host allows and returns an `Enforcement`:
`adopt(pid)` puts the sandbox's process tree in its cgroups, `kill()` ends everything in them
(daemonised processes included), `remove()` deletes them. `Enforcement.rlimits` are always applied
by the agent too (file descriptors, file size; memory and processes when no cgroup can). This module
must never touch cgroups it did not create: everything lives below `<own cgroup>/openshell/<name>`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _disk

CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "pids", "cpu", "freezer")
NOFILE = 4096
CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class Limits:
    cpu: float | None = 1.0
    memory: int | None = 2 << 30
    pids: int | None = 256
    disk: int | None = None
    timeout: float | None = None

    def to_dict(self) -> dict:
        return {
            "cpu": self.cpu,
            "memory": self.memory,
            "pids": self.pids,
            "disk": self.disk,
            "timeout": self.timeout,
        }


@dataclass
class Enforcement:
    kind: str  # "cgroup v2" | "cgroup v1" | "rlimits"
    paths: list[str] = field(default_factory=list)
    rlimits: dict[str, int] = field(default_factory=dict)

    def adopt(self, root: int) -> None:
        """Move `root` and every descendant not yet there into the sandbox's cgroups, parents first
        (a child forked after its parent moved is born inside). Processes that exit meanwhile are
        skipped. Complete once the tree forks no more: call it again then."""
        if not self.paths:
            return
        inside = _procs(self.paths[0])
        for pid in _descendants(root):
            if pid in inside:
                continue
            for path in self.paths:
                try:
                    Path(path, "cgroup.procs").write_text(f"{pid}\n")
                except ProcessLookupError:
                    break

    def pids(self) -> set[int]:
        """Live (not zombie) processes in the sandbox's cgroups."""
        found: set[int] = set()
        for path in self.paths:
            found |= _procs(path)
        return {pid for pid in found if _state_of(pid) not in ("Z", "X", None)}

    def kill(self, timeout: float = 5.0) -> None:
        if not self.paths or not self.pids():  # (the usual case: the PID namespace took them all)
            return
        if self.kind == "cgroup v2":
            with contextlib.suppress(OSError):
                Path(self.paths[0], "cgroup.kill").write_text("1\n")
        else:
            freezer = next((p for p in self.paths if "/freezer/" in p), None)
            _write(freezer, "freezer.state", "FROZEN")
            for pid in self.pids():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            _write(freezer, "freezer.state", "THAWED")
        deadline = time.monotonic() + timeout
        while self.pids() and time.monotonic() < deadline:
            for pid in self.pids():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)

    def remove(self) -> None:
        for path in self.paths:
            for _ in range(200):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.005)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "paths": self.paths, "rlimits": self.rlimits}

    @classmethod
    def from_dict(cls, data: dict) -> Enforcement:
        return cls(data.get("kind", "rlimits"), list(data.get("paths", [])), dict(data.get("rlimits", {})))


def _procs(cgroup: str) -> set[int]:
    try:
        return {int(p) for p in Path(cgroup, "cgroup.procs").read_text().split()}
    except OSError:
        return set()


def _descendants(root: int) -> list[int]:
    """`root` and its descendants, parents before children (from /proc/PID/task/TID/children)."""
    out, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        out.append(pid)
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            with contextlib.suppress(OSError):
                queue.extend(int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split())
    return out


def _state_of(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _write(directory: str | None, name: str, value: str) -> None:
    if directory:
        with contextlib.suppress(OSError):
            Path(directory, name).write_text(value + "\n")


def _own_cgroups() -> dict[str, str]:
    """controller (or "" for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    out: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _id, controllers, path = line.split(":", 2)
        for ctrl in controllers.split(",") if controllers else [""]:
            out[ctrl] = path
    return out


def _v2_base() -> Path | None:
    """Where v2 sandboxes go: below our own cgroup, if it is ours to write and has the controllers."""
    own = _own_cgroups().get("")
    if own is None:
        return None
    for mount in (CGROUP_ROOT, CGROUP_ROOT / "unified"):
        controllers = mount / "cgroup.controllers"
        if not controllers.exists() or not {"memory", "pids"} <= set(controllers.read_text().split()):
            continue
        base = mount / own.lstrip("/")
        if os.access(base, os.W_OK) and os.access(base / "cgroup.subtree_control", os.W_OK):
            return base
    return None


def _setup_v2(base: Path, name: str, limits: Limits) -> Enforcement:
    # A cgroup with processes cannot enable controllers for children: keep ours in a leaf.
    parent = base / "openshell"
    parent.mkdir(exist_ok=True)
    wanted = [c for c in ("memory", "pids", "cpu") if c in (base / "cgroup.controllers").read_text().split()]
    for directory in (base, parent):
        with contextlib.suppress(OSError):
            (directory / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted) + "\n")
    path = parent / name
    path.mkdir()
    if limits.memory:
        _write(str(path), "memory.max", str(limits.memory))
        _write(str(path), "memory.swap.max", "0")
    if limits.pids:
        _write(str(path), "pids.max", str(limits.pids))
    if limits.cpu:
        _write(str(path), "cpu.max", f"{int(limits.cpu * CPU_PERIOD_US)} {CPU_PERIOD_US}")
    return Enforcement("cgroup v2", [str(path)])


def _setup_v1(name: str, limits: Limits) -> Enforcement | None:
    own = _own_cgroups()
    paths: dict[str, Path] = {}
    for ctrl in V1_CONTROLLERS:
        mount = CGROUP_ROOT / ctrl
        if ctrl not in own or not (mount / "cgroup.procs").exists():
            return None
        parent = mount / own[ctrl].lstrip("/") / "openshell"
        if not os.access(parent.parent, os.W_OK):
            return None
        paths[ctrl] = parent / name
    created: list[str] = []
    try:
        for path in paths.values():
            path.mkdir(parents=True)
            created.append(str(path))
        mem = paths["memory"]
        if limits.memory:
            (mem / "memory.limit_in_bytes").write_text(str(limits.memory))
            with contextlib.suppress(OSError):
                (mem / "memory.memsw.limit_in_bytes").write_text(str(limits.memory))
        if limits.pids:
            (paths["pids"] / "pids.max").write_text(str(limits.pids))
        if limits.cpu:
            (paths["cpu"] / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            (paths["cpu"] / "cpu.cfs_quota_us").write_text(str(int(limits.cpu * CPU_PERIOD_US)))
    except OSError:
        Enforcement("cgroup v1", created).remove()
        return None
    return Enforcement("cgroup v1", created)


def find(name: str, token: str) -> Enforcement:
    """The cgroups of a sandbox whose record is lost (its leaf name is known), to kill and remove."""
    leaf = f"{name}-{token}"
    own = _own_cgroups()
    candidates = [
        CGROUP_ROOT / c / own[c].lstrip("/") / "openshell" / leaf for c in V1_CONTROLLERS if c in own
    ]
    base = _v2_base()
    if base is not None:
        candidates.append(base / "openshell" / leaf)
    paths = [str(p) for p in candidates if p.is_dir()]
    return Enforcement("cgroup v2" if base is not None and paths else "cgroup v1", paths)


CGROUP_FILES = {
    "cgroup v2": {"cpu": "cpu.max", "memory": "memory.max", "pids": "pids.max"},
    "cgroup v1": {"cpu": "cpu.cfs_quota_us", "memory": "memory.limit_in_bytes", "pids": "pids.max"},
}
RLIMIT_NOTES = {  # what rlimits can and cannot do, said in `openshell sandbox ls`
    "cpu": ("none", "not enforced: no cgroup here, and RLIMIT_CPU caps CPU time, not the rate"),
    "memory": ("RLIMIT_AS", "RLIMIT_AS caps each process's address space, not the sandbox's memory"),
    "pids": ("RLIMIT_NPROC", "RLIMIT_NPROC counts every process of the sandbox's host uid"),
}


def describe(kind: str, limits: dict, rlimits: dict, tmp_size: int, disk: Any, state: str) -> dict[str, dict]:
    """What enforces each resource of a sandbox: {resource: {"limit", "by", "note"}} (for `ls`);
    "disk" also has "workspace": {"by", "limit", "inodes", "note"} (`disk`: its `_disk.Disk`)."""
    out: dict[str, dict] = {}
    for resource in ("cpu", "memory", "pids"):
        if kind in CGROUP_FILES:
            by, note = f"{kind} ({CGROUP_FILES[kind][resource]})", ""
        else:
            by, note = RLIMIT_NOTES[resource]
        out[resource] = {"limit": limits.get(resource), "by": by, "note": note}
    out["disk"] = describe_disk(limits, rlimits.get("FSIZE"), tmp_size, disk, state)
    timeout = limits.get("timeout")
    out["timeout"] = {"limit": timeout, "by": "timeout -s KILL" if timeout else "none", "note": ""}
    return out


def describe_disk(limits: dict, files: int | None, tmp_size: int, disk: Any, state: str) -> dict:
    """The "disk" entry of `describe`, for every backend: the workspace's mechanism (`_disk.describe`),
    /tmp and /dev/shm, and the per-file cap (`files`: RLIMIT_FSIZE, None when there is none)."""
    ws_by, ws_note = _disk.describe(disk, state)
    note = f"{ws_note}; /tmp and /dev/shm are tmpfs of {tmp_size} bytes each (their pages count as memory)"
    if files:
        note += f"; no file may grow past {files} bytes (RLIMIT_FSIZE)"
    return {
        "limit": (disk.limit if disk is not None else None) or limits.get("disk"),
        "by": ws_by + (" + RLIMIT_FSIZE" if files else ""),
        "note": note,
        "workspace": {
            "by": ws_by,
            "limit": disk.limit if disk is not None and disk.mechanism != "none" else None,
            "inodes": disk.inodes if disk is not None else None,
            "note": ws_note,
        },
    }


def plan(name: str, limits: Limits, token: str) -> Enforcement:
    """The strongest enforcement available here. `token` makes the cgroup name unique per start."""
    leaf = f"{name}-{token}"
    rlimits = {"NOFILE": NOFILE}
    if limits.disk:
        rlimits["FSIZE"] = limits.disk
    enforcement: Enforcement | None = None
    base = _v2_base()
    if base is not None:
        with contextlib.suppress(OSError):
            enforcement = _setup_v2(base, leaf, limits)
    if enforcement is None and os.geteuid() == 0:
        enforcement = _setup_v1(leaf, limits)
    if enforcement is None:
        enforcement = Enforcement("rlimits")
        if limits.memory:
            rlimits["AS"] = limits.memory
        if limits.pids:
            rlimits["NPROC"] = limits.pids
    enforcement.rlimits = rlimits
    return enforcement
