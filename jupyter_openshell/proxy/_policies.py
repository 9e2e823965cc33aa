"""The compiled policies in force, one per caller (the host default and each sandbox), hot-reloaded.

Each caller's policy is a file. `refresh()` stats every file and recompiles the ones whose
(inode, size, mtime) changed; a valid new version replaces the old one in a single reference swap, so
a request that already took its `Active` snapshot finishes under the version it started with. An
invalid or unreadable file changes nothing: the old version stays in force and the error is kept for
the status report. A caller with no valid version at all is denied everything (fail closed).
This module must never do network I/O.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_openshell.policy import CompiledPolicy, Policy, PolicyError, load_policy_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Active:
    """An immutable snapshot: one policy version and its compiled matcher."""

    policy: Policy
    compiled: CompiledPolicy
    loaded_at: float

    @property
    def version(self) -> str:
        return self.policy.version


@dataclass
class _Slot:
    path: Path
    signature: tuple[int, int, int] | None = None
    active: Active | None = None
    error: str | None = None
    error_at: float | None = None
    reloads: int = 0
    history: list[str] = field(default_factory=list)


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class PolicySet:
    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}

    def set_source(self, name: str, path: Path) -> None:
        """Watch `path` as the policy of caller `name` and load it now (errors are kept, not raised)."""
        slot = self._slots.get(name)
        if slot is None or slot.path != path:
            slot = _Slot(path)
            self._slots[name] = slot
        self._load(name, slot, force=True)

    def drop(self, name: str) -> None:
        self._slots.pop(name, None)

    def get(self, name: str) -> Active | None:
        slot = self._slots.get(name)
        return slot.active if slot is not None else None

    def refresh(self, force: bool = False) -> list[str]:
        """Reload changed files; returns the names whose version changed."""
        return [name for name, slot in list(self._slots.items()) if self._load(name, slot, force)]

    def _load(self, name: str, slot: _Slot, force: bool) -> bool:
        sig = _signature(slot.path)
        if sig == slot.signature and not force:
            return False
        slot.signature = sig
        if sig is None:
            self._fail(name, slot, f"{slot.path}: policy file not found")
            return False
        try:
            policy = load_policy_file(slot.path)
            compiled = policy.compile()
        except PolicyError as exc:
            self._fail(name, slot, str(exc))
            return False
        except (OSError, UnicodeDecodeError) as exc:
            self._fail(name, slot, f"{slot.path}: cannot read policy: {exc}")
            return False
        slot.error = slot.error_at = None
        if slot.active is not None and slot.active.version == policy.version:
            return False
        slot.active = Active(policy, compiled, time.time())
        slot.reloads += 1
        slot.history = [*slot.history[-9:], policy.version]
        log.info("policy %s: version %s in force (%s, %s rules)", name, policy.version, slot.path,
                 len(policy.egress))
        return True

    def _fail(self, name: str, slot: _Slot, message: str) -> None:
        if slot.error != message:
            kept = slot.active.version if slot.active else "none: every request is denied"
            log.error("policy %s: reload failed, version %s stays in force\n%s", name, kept, message)
        slot.error, slot.error_at = message, time.time()

    def directories(self) -> set[str]:
        """Directories holding the watched files (for change notification)."""
        return {str(slot.path.parent) for slot in self._slots.values()}

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, slot in self._slots.items():
            act = slot.active
            out[name] = {
                "file": str(slot.path),
                "version": act.version if act else None,
                "mode": act.policy.mode if act else None,
                "loaded_at": act.loaded_at if act else None,
                "reloads": slot.reloads,
                "recent_versions": list(slot.history),
                "last_error": slot.error,
                "last_error_at": slot.error_at,
            }
        return out
