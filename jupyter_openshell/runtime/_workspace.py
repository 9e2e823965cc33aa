"""The host side of a sandbox's workspace, for every backend that runs sandboxes on this machine.

Which directory it is (a given one is checked: never a system directory, the state directory or a home
directory), where a root-started sandbox's host paths live and which host uid it runs as (`exposed_dir`:
`EXPOSED_ROOT/<uid>-<token>`, whose name reserves the uid machine-wide), the ACL that lets that uid into
a root-owned workspace, the workspace's disk limit (`_disk`) and its protected entries (`_protect`), and
undoing each of them. What one sandbox set up on a shared workspace (placeholders, a project quota) stays
while another live sandbox of the state directory relies on it, whatever that sandbox's backend: liveness
is read from the records alone (`in_use`). It must never change the owner of a directory the caller gave,
and never remove anything it did not create.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import pwd
import shutil
import stat
from pathlib import Path
from typing import Any

from .. import paths
from . import _acl, _bwrap, _disk, _protect, _state
from ._types import SandboxError

log = logging.getLogger("jupyter_openshell.runtime")

EXPOSED_ROOT = Path("/var/lib/openshell-sandboxes")
WORKSPACE_ACL = "workspace-acl.json"  # in the exposed dir: what to undo on a given workspace
# Never a workspace (the sandbox may write it): these directories, nor anything in or above SYSTEM_TREES.
SYSTEM_WORKSPACES = ("/", "/var", "/var/lib", "/home", "/root", "/run", "/tmp", "/srv", "/opt", "/mnt")
SYSTEM_TREES = (*_bwrap.SYSTEM_DIRS, "/etc", "/boot", "/proc", "/sys", "/dev", str(EXPOSED_ROOT))


def _inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


# --- which directory ---------------------------------------------------------------------------
def check(workspace: Path) -> None:
    """A given workspace becomes writable by the sandbox: never a system directory, the state dir, nor
    a home directory (where the user's shell, git, Jupyter and ssh read their start-up files) or
    one of its parents."""
    state = os.path.realpath(paths.state_dir())
    if (
        str(workspace) in SYSTEM_WORKSPACES
        or any(_inside(str(workspace), d) or _inside(d, str(workspace)) for d in SYSTEM_TREES)
        or _inside(str(workspace), state)
    ):
        raise SandboxError(
            f"--workspace {workspace} is a system directory (or holds one, or is in the openshell state); "
            "a sandbox may write its workspace, so give it a directory of its own (e.g. /srv/work/NAME)"
        )
    for home in _homes(workspace):
        if _inside(home, str(workspace)):
            what = "a home directory" if home == str(workspace) else f"a parent of the home directory {home}"
            raise SandboxError(
                f"workspace {workspace} is {what}: a sandbox may write its workspace, and your shell, git, "
                "Jupyter and ssh run or trust files there (.bashrc, .jupyter, .ssh/authorized_keys). Give it "
                f"a project directory below it instead (e.g. {home}/projects/NAME); for Jupyter, open the "
                "notebook from (or start the server in) such a project directory"
            )


def _homes(workspace: Path) -> set[str]:
    """The home directories a workspace must not be or hold: the caller's ($HOME and its passwd
    entry) and that of the workspace's owner."""
    uids = {os.getuid()}
    with contextlib.suppress(OSError):
        uids.add(workspace.stat().st_uid)
    found = {os.environ.get("HOME") or ""}
    for uid in uids:
        with contextlib.suppress(KeyError):
            found.add(pwd.getpwuid(uid).pw_dir)
    return {os.path.realpath(h) for h in found if h.startswith("/") and h != "/"}


def choose(spec_workspace: str | None, exposed: Path) -> tuple[Path, bool, bool]:
    """(workspace, private, created by us): the given one (checked; made if missing), else
    `<exposed>/workspace`."""
    if not spec_workspace:
        workspace = exposed / "workspace"
        workspace.mkdir(mode=0o700, exist_ok=True)
        return workspace, True, True
    workspace = Path(spec_workspace).resolve()
    check(workspace)
    if workspace.exists():
        return workspace, False, False
    workspace.mkdir(parents=True)
    return workspace, False, True


# --- which host uid ----------------------------------------------------------------------------
def exposed_dir(directory: Path, token: str) -> tuple[Path, int | None]:
    """(where the sandbox's host paths live, the reserved host uid when we are root).

    As root they go to `EXPOSED_ROOT/<uid>-<token>` (0700 until `host_uid` opens it to the sandbox's
    own gid alone: its name shows in `ps`, and its `chan/proxy.sock` must be reachable by that sandbox
    only), whose name reserves the uid machine-wide (state directories of other users, and every backend,
    share the range): bwrap resolves bind sources by name with the sandbox uid's rights, so they cannot be
    inside the 0700 state directory; a container's engine binds the private workspace (and its image)
    from there too.
    Not root: the sandbox's own state directory, and no uid of its own.
    """
    if os.geteuid() != 0:
        return directory, None
    EXPOSED_ROOT.mkdir(mode=0o711, parents=True, exist_ok=True)
    EXPOSED_ROOT.chmod(0o711)
    lock = os.open(EXPOSED_ROOT / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        used = {int(p.split("-", 1)[0]) for p in os.listdir(EXPOSED_ROOT) if p.split("-", 1)[0].isdigit()}
        uid = next(u for u in range(_state.UID_BASE, _state.UID_BASE + 1_000_000) if u not in used)
        exposed = EXPOSED_ROOT / f"{uid}-{token}"
        exposed.mkdir(mode=0o700)
    finally:
        os.close(lock)
    return exposed, uid


def host_uid(reserved: int | None, workspace: Path, created: bool, exposed: Path) -> int:
    """The host uid the sandbox runs as (see `_host_uid`). As root, the exposed directory then becomes
    root:<that uid's gid> 0710 (sandboxes run with gid = uid): the sandbox can reach its binds there,
    and no other local user can, whatever path `ps` shows them."""
    uid = _host_uid(reserved, workspace, created, exposed)
    if reserved is not None and exposed.parent == EXPOSED_ROOT:
        os.chown(exposed, 0, uid, follow_symlinks=False)
        os.chmod(exposed, 0o710, follow_symlinks=False)
    return uid


def _host_uid(reserved: int | None, workspace: Path, created: bool, exposed: Path) -> int:
    """Never host root: as root, run as the workspace's (non-root) owner or the reserved per-sandbox uid.

    The owner of a workspace the user gave is never changed: a root-owned one gets a POSIX ACL entry
    for the reserved uid (undone when the sandbox is removed). Only a workspace we created is chowned.
    """
    if reserved is None:
        return os.getuid()
    if created:
        os.chown(workspace, reserved, reserved, follow_symlinks=False)
        return reserved
    owner = workspace.stat().st_uid
    if owner != 0:
        return owner
    try:
        saved = _acl.grant(str(workspace), reserved)
    except OSError as exc:
        raise SandboxError(
            f"--workspace {workspace} is owned by root and openshell never changes the owner of a directory "
            f"you give it; granting the sandbox's uid {reserved} access with a POSIX ACL failed "
            f"({exc.strerror or exc}). Either hand the directory to an unprivileged owner, whose uid the "
            f"sandbox then runs as (`chown 65534 {workspace}`), or leave out --workspace for a private one"
        ) from exc
    (exposed / WORKSPACE_ACL).write_text(json.dumps(saved))
    return reserved


def _release_acl(exposed: Path) -> None:
    """Undo the ACL `host_uid` put on a given workspace (before its uid is freed for reuse)."""
    try:
        saved = json.loads((exposed / WORKSPACE_ACL).read_text())
    except (OSError, ValueError):
        return
    with contextlib.suppress(OSError):
        _acl.release(saved)


def remove_exposed(exposed: str | Path | None) -> None:
    """Free a root-started sandbox's exposed dir (its processes are gone): what a lost record left
    mounted there is unmounted, the workspace ACL undone, then the directory (and its uid) freed."""
    if not exposed or Path(exposed).parent != EXPOSED_ROOT:
        return
    exposed = Path(exposed)
    _disk.unmount(str(exposed / "workspace"))
    _release_acl(exposed)
    rmtree(exposed)


# --- who else uses it --------------------------------------------------------------------------
def in_use(record: dict) -> bool:
    """The record's sandbox has live processes (or a live process is creating it), from the record
    alone: `creator` while "creating", else `pid` (the shim, the container's init) with its start."""
    if record.get("state") == "creating":
        return _state.alive(*(record.get("creator") or [None, None]))
    return record.get("state") in ("running", "starting") and _state.alive(
        record.get("pid"), record.get("pid_start")
    )


def _live_records(name: str) -> list[dict]:
    """Records of the other sandboxes of this state directory, of any backend, that are in use."""
    out = []
    for other in _state.names():
        record = _state.read(other) if other != name else None
        if record and in_use(record):
            out.append(record)
    return out


def _placeholders_in_use(name: str) -> set[tuple[int, int]]:
    found: set[tuple[int, int]] = set()
    for record in _live_records(name):
        found |= _protect.placeholder_ids(_protect.Protection.from_dict(record.get("protect")))
    return found


def _live_disks(name: str) -> list[_disk.Disk]:
    disks = (_disk.Disk.from_dict(r.get("disk")) for r in _live_records(name))
    return [d for d in disks if d is not None]


# --- disk limit and protected entries ----------------------------------------------------------
def attach_disk(record: dict, workspace: Path, private: bool, size: int | None, exposed: Path) -> _disk.Disk:
    """Limit the workspace (see `_disk`). The plan is on disk before anything is mounted, so that a
    teardown, or `gc` after a crash, finds what to undo. A loop-mounted image that cannot be had (no
    loop devices, e.g. in a container) becomes a tmpfs, which the backend mounts itself (`tmpfs`)."""
    disk = _disk.plan(workspace, private, size, os.geteuid() == 0, exposed)
    record["disk"] = disk.to_dict()
    _state.write(record)
    try:
        _disk.attach(disk)
    except OSError as exc:
        if disk.mechanism != "ext4 image":
            raise SandboxError(f"cannot limit the workspace {workspace} ({disk.mechanism}): {exc}") from exc
        _disk.release(disk, remove=True)  # (the image copied before the loop device was refused)
        disk = _disk.Disk("tmpfs", disk.limit, disk.inodes, str(workspace))
        log.warning("workspace image of sandbox %s not mounted (%s): a tmpfs instead", record["name"], exc)
    if disk.mechanism == "project quota":  # (a workspace shared with live sandboxes: theirs to restore)
        shared = [
            d for d in _live_disks(record["name"]) if (d.workspace, d.projid) == (disk.workspace, disk.projid)
        ]
        if shared:
            disk.saved = shared[0].saved
    record["disk"] = disk.to_dict()
    return disk


def protect(record: dict, workspace: Path, disk: _disk.Disk, policy: Any) -> list[tuple[str, int, bool]]:
    """Protect the workspace's entries that host tools run or trust (see `_protect`); returns the binds
    to make: (relative path, O_PATH fd, writable), the caller closes the fds. Only in a workspace the
    caller gave (a host directory where the user's tools run): a private one is the sandbox's own
    scratch space, removed with it (or a tmpfs no host tool sees)."""
    fs = policy.filesystem
    writable, extra = getattr(fs, "workspace_writable", ()), getattr(fs, "workspace_protected", ())
    if record.get("workspace_owned") or disk.mechanism == "tmpfs":
        record["protect"] = _protect.Protection(str(workspace), writable=sorted(writable)).to_dict()
        return []
    owner = (workspace.stat().st_uid, workspace.stat().st_gid) if os.geteuid() == 0 else None
    with _state.locked(".protect.lock"):  # (sandboxes sharing a workspace share its placeholders)
        in_use_ = _placeholders_in_use(record["name"])
        protection, fds = _protect.plan(str(workspace), writable, extra, owner, in_use_)
        record["protect"] = protection.to_dict()
        _state.write(record)
    return fds


def release(name: str, record: dict, remove: bool) -> None:
    """Undo `protect` and `attach_disk` (the sandbox's processes are gone); with `remove`, the
    workspace image goes too."""
    with _state.locked(".protect.lock"):
        protection = _protect.Protection.from_dict(record.get("protect"))
        _protect.remove_placeholders(protection, _placeholders_in_use(name))
    disk = _disk.Disk.from_dict(record.get("disk"))
    shared = disk is not None and disk.mechanism == "project quota"
    if shared and any((d.workspace, d.projid) == (disk.workspace, disk.projid) for d in _live_disks(name)):
        return  # (the last sandbox on this workspace restores the quota)
    _disk.release(disk, remove)


def details(record: dict) -> dict:
    """What `_protect` made read-only in the workspace, for SandboxInfo.details["protected"]."""
    protection = _protect.Protection.from_dict(record.get("protect"))
    if protection is None:
        return {}
    return {
        "bound": protection.bind,
        "placeholders": [p[0] for p in protection.placeholders],
        "pinned": protection.pinned,
        "writable": protection.writable,
        "warnings": protection.warnings,
    }


def rmtree(path: Path) -> None:
    """Remove a tree the sandbox wrote (its processes are gone): never follow its symlinks; make
    directories it locked (mode 000) ours to walk, then retry."""
    if not path.is_dir() or path.is_symlink():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    failed: list[str] = []
    for _ in range(8):
        failed.clear()
        shutil.rmtree(path, onerror=lambda _f, target, _e: failed.append(target))
        if not failed or not path.exists():
            return
        for target in failed:
            for candidate in (target, os.path.dirname(target)):
                with contextlib.suppress(OSError):
                    if stat.S_ISDIR(os.lstat(candidate).st_mode):
                        os.chmod(candidate, 0o700)
