"""Sandbox records on disk: `<state>/sandboxes/<name>/sandbox.json`, written atomically, plus the
allocation of each sandbox's proxy identity address (127.77.X.Y) and, for root, its host uid.

Also answers "is this recorded process still the one we started?" (pid + start time), which is how a
restarted CLI tells live sandboxes from orphans. It must never trust a pid without its start time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from .. import paths

ADDRESS_PREFIX = "127.77"
MAX_SANDBOXES = 254 * 256
UID_BASE = 1_500_000_000  # host uids of root-started sandboxes start here (see _workspace.exposed_dir)


def root() -> Path:
    return paths.ensure_private_dir(paths.layout().sandboxes_dir)


def directory(name: str) -> Path:
    """The sandbox's directory (not created; its parent, private, is)."""
    root()
    return paths.layout().sandbox_dir(name)


def record_path(name: str) -> Path:
    return paths.layout().sandbox_record(name)


@contextlib.contextmanager
def locked(lock: str = ".lock") -> Iterator[None]:
    """Exclusive across processes: ".lock" for records, ".protect.lock" for workspace placeholders
    (taken inside the first, never the other way round)."""
    fd = os.open(root() / lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read(name: str) -> dict | None:
    try:
        return json.loads(record_path(name).read_text())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except ValueError:
        return {"name": name, "corrupt": True}


def write(record: dict) -> None:
    path = record_path(record["name"])
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh, indent=2, sort_keys=True)
    os.replace(tmp, path)


def names() -> list[str]:
    return sorted(p.name for p in root().iterdir() if p.is_dir() and not p.name.startswith("."))


def allocate_slot() -> int:
    """The lowest slot not used by any recorded sandbox (call under `locked()`)."""
    used = set()
    for name in names():
        record = read(name) or {}
        if "slot" in record:
            used.add(record["slot"])
    for slot in range(MAX_SANDBOXES):
        if slot not in used:
            return slot
    raise RuntimeError("no free sandbox slot: remove sandboxes with `openshell sandbox rm`")


def address(slot: int) -> str:
    return f"{ADDRESS_PREFIX}.{slot // 254}.{slot % 254 + 1}"


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, None if it does not exist."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def alive(pid: int | None, started: int | None) -> bool:
    """True if `pid` is still the process that started at `started` and has not exited (zombie)."""
    fields = _stat(pid) if pid else None
    return bool(fields) and int(fields[19]) == started and fields[0] not in ("Z", "X")


def now() -> float:
    return time.time()
