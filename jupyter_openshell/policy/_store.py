"""`PolicyStore`: named policy files under <state>/policies with history, rollback and diff.

Layout: `<name>.yaml` is the current policy; `<name>.history/<unix-ms>-<version>.yaml` keeps every
applied version. `put()` validates before anything is written (an invalid policy never lands) and
writes atomically (temp file in the same directory, fsync, rename; mode 0600). It must never write
outside its policies directory or accept a name that could escape it.
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..names import HOST_CALLER, check_policy_name, is_sandbox_name
from ..paths import Layout, ensure_private_dir, state_dir, write_private
from ._model import Policy

_HIST = re.compile(r"(\d+)-([0-9a-f]{12})\.yaml\Z")


@dataclass(frozen=True)
class HistoryEntry:
    ts_ms: int
    version: str
    path: Path

    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")


class PolicyStore:
    """Named policies in `<state_dir>/policies` (default: `jupyter_openshell.paths.state_dir()`)."""

    def __init__(self, state_dir_: str | os.PathLike[str] | None = None):
        self.layout = Layout(Path(state_dir_) if state_dir_ is not None else state_dir())
        self.root = ensure_private_dir(self.layout.policies_dir)

    def path(self, name: str) -> Path:
        """Path of the current policy file of `name` (may not exist). Raises ValueError (`names.InvalidName`)
        unless `name` is a sandbox name or "default"."""
        return self.layout.policy(check_policy_name(name))

    def _hist_dir(self, name: str) -> Path:
        return self.layout.policy_history(check_policy_name(name))

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def names(self) -> list[str]:
        found = (p.stem for p in self.root.glob("*.yaml"))
        return sorted(n for n in found if n == HOST_CALLER or is_sandbox_name(n))

    def text(self, name: str) -> str | None:
        try:
            return self.path(name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def get(self, name: str) -> Policy | None:
        """The current policy of `name`, or None if there is none. Raises PolicyError if the file on
        disk was edited into an invalid state."""
        path = self.path(name)
        if not path.exists():
            return None
        from ._parse import load_policy_file

        return load_policy_file(path)

    def put(self, name: str, text: str, validated: Policy | None = None) -> Policy:
        """Validate `text` (raising PolicyError, writing nothing, if invalid), then record it in the
        history and make it current, atomically. `validated`: the Policy already made of this very
        text (by `parse_policy`, or built as its equal), which is then not parsed again."""
        path = self.path(name)
        if validated is not None and validated.text == text:
            policy = validated
        else:
            from ._parse import parse_policy

            policy = parse_policy(text, source=str(path))
        with self._lock():
            hist = ensure_private_dir(self._hist_dir(name))
            if self.text(name) != text or not any(hist.iterdir()):
                ts = int(time.time() * 1000)
                write_private(hist / f"{ts}-{policy.version}.yaml", text)
            write_private(path, text)
        return policy

    def history(self, name: str) -> list[HistoryEntry]:
        """Applied versions of `name`, oldest first."""
        hist = self._hist_dir(name)
        self.path(name)
        if not hist.is_dir():
            return []
        out = []
        for p in hist.iterdir():
            m = _HIST.match(p.name)
            if m:
                out.append(HistoryEntry(int(m.group(1)), m.group(2), p))
        return sorted(out, key=lambda e: (e.ts_ms, e.path.name))

    def entry(self, name: str, version: str) -> HistoryEntry:
        """The newest applied version of `name` whose hash starts with `version` (>= 4 hex digits)."""
        matches = (
            [e for e in self.history(name) if e.version.startswith(version)] if len(version) >= 4 else []
        )
        if not matches:
            known = ", ".join(e.version for e in self.history(name)[-5:]) or "none"
            raise LookupError(f"policy {name!r} has no version {version!r} (recent: {known})")
        return matches[-1]

    def rollback(self, name: str, version: str) -> Policy:
        """Make an earlier version (full hash or a prefix of at least 4 hex digits) current again."""
        return self.put(name, self.entry(name, version).text())

    def diff(self, name: str, old: str, new: str | None = None) -> str:
        """Unified diff between version `old` and version `new` (default: the current file)."""
        a = self.entry(name, old)
        if new is None:
            b_text, b_label = self.text(name) or "", f"{name} (current)"
        else:
            b = self.entry(name, new)
            b_text, b_label = b.text(), f"{name}@{b.version}"
        return "".join(
            difflib.unified_diff(
                a.text().splitlines(keepends=True),
                b_text.splitlines(keepends=True),
                fromfile=f"{name}@{a.version}",
                tofile=b_label,
            )
        )
