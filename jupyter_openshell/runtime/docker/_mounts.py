"""How a Docker sandbox's workspace appears in its container, and the check that it is what was planned.

The workspace is a bind of the host directory (for a private one as root: the loop-mounted ext4 image
`_disk` mounted on the host), or, where the workspace limit is a tmpfs, a tmpfs the engine mounts with
that size and inode count. Each protected entry `_protect.plan` found is bound read-only onto itself
(`/workspace/<rel>`), each directory holding a nested one writable onto itself (a mount point cannot be
renamed). The engine binds by path, not by the O_PATH fds the local backend hands to bwrap, so between
the plan and the container's start another process could put something else at a path. `verify`
therefore looks, once the container runs and before anything runs in it, at each mount through the
container's own root (`/proc/<init>/root`, never following a link): the inode must be the one the plan
holds open (so it cannot have been freed and reused meanwhile), and it must be a mount point of its own
with the planned ro/rw flag. It must never follow a link on the host or inside the container.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

from .. import _bwrap, _disk
from .._types import SandboxError

Planned = tuple[str, int, bool]  # (path inside, O_PATH fd of what the host planned there, writable)


def workspace_mounts(
    mount: Any, workspace: str, disk: _disk.Disk, protected: Sequence[tuple[str, int, bool]], uid: int
) -> tuple[list[Any], dict[str, str], list[Planned]]:
    """(engine mounts, tmpfs mounts, what `verify` checks) of the workspace and its protected entries.
    `protected` is `_protect.plan`'s list (relative path, O_PATH fd, writable); `mount` the SDK's Mount."""
    if disk.mechanism == "tmpfs":  # (nothing of the host: no entry to protect)
        size = f"size={disk.limit},nr_inodes={disk.inodes}"
        return [], {_bwrap.WORKSPACE: f"rw,nosuid,nodev,exec,{size},mode=0700,uid={uid},gid={uid}"}, []
    root = os.open(workspace, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    mounts = [mount(_bwrap.WORKSPACE, workspace, type="bind", read_only=False)]
    planned: list[Planned] = [(_bwrap.WORKSPACE, root, True)]
    for rel, fd, writable in protected:
        inside = f"{_bwrap.WORKSPACE}/{rel}"
        mounts.append(mount(inside, os.path.join(workspace, rel), type="bind", read_only=not writable))
        planned.append((inside, fd, writable))
    return mounts, {}, planned


def verify(name: str, pid: int, planned: Sequence[Planned]) -> None:
    """SandboxError unless each planned path, seen from inside the container whose init is `pid`, is a
    mount point of the planned inode with the planned flag (see the module's docstring)."""
    if not planned:
        return
    flags = _mount_flags(pid)
    root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for inside, fd, writable in planned:
            want = os.fstat(fd)
            got = _lookup(root, inside)
            if got is None:
                problem = "is missing"
            elif (got.st_dev, got.st_ino) != (want.st_dev, want.st_ino):
                problem = "is not the host entry planned for it (it was replaced while the container started)"
            elif inside not in flags:
                problem = "is not a mount of its own"
            elif flags[inside] != ("rw" if writable else "ro"):
                problem = f"is mounted {flags[inside]}, not {'rw' if writable else 'ro'}"
            else:
                continue
            raise SandboxError(
                f"sandbox {name}: {inside} in its container {problem}; nothing ran in it and it was removed. "
                "Something changed the workspace while the sandbox was created (another sandbox on the same "
                "workspace?): create it again"
            )
    finally:
        os.close(root)


def _lookup(root: int, path: str) -> os.stat_result | None:
    """lstat of `path` below the directory fd `root`, one component at a time, following no link."""
    fd = root
    try:
        parts = [p for p in path.split("/") if p]
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC | (0 if last else os.O_DIRECTORY)
            try:
                nxt = os.open(part, flags, dir_fd=fd)
            except OSError:
                return None
            if fd != root:
                os.close(fd)
            fd = nxt
        return os.fstat(fd)
    finally:
        if fd != root:
            os.close(fd)


def _mount_flags(pid: int) -> dict[str, str]:
    """{mount point: "ro"|"rw"} of the mounts `pid` sees (the top one where several are stacked)."""
    found: dict[str, str] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            point = _unescape(fields[4])
            found[point] = "ro" if "ro" in fields[5].split(",") else "rw"
    return found


def _unescape(field: str) -> str:
    """mountinfo's octal escapes (space, tab, newline, backslash) undone."""
    return field.encode().decode("unicode_escape").encode("latin-1").decode() if "\\" in field else field
