"""Who owns which REST-created sandbox, persisted in `<state>/jupyter/owners.json` (0600).

One entry per sandbox: {"owner", "created"}; `created` is the runtime's creation time of that sandbox, so
a record never hands over a later sandbox that merely reuses the name. Every change is a read-merge-write
under a file lock with an atomic replace, so a restarted server (or a second one on the same state) sees
what was recorded. It must never grant a sandbox whose record is missing or does not match.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
from collections.abc import Iterator
from pathlib import Path


class OwnerStore:
    def __init__(self, path: Path):
        self.path = path
        self._lock_path = path.with_suffix(".lock")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def load(self) -> dict[str, dict]:
        """{name: {"owner", "created"}}; a missing or unreadable file is no records (nobody owns anything)."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {
            n: r for n, r in data.items() if isinstance(r, dict) and isinstance(r.get("owner"), str)
        }

    def _write(self, data: dict[str, dict]) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def set(self, name: str, owner: str, created: float) -> None:
        with self._locked():
            data = self.load()
            data[name] = {"owner": owner, "created": created}
            self._write(data)

    def remove(self, *names: str) -> None:
        with self._locked():
            data = self.load()
            if any(n in data for n in names):
                for name in names:
                    data.pop(name, None)
                self._write(data)


def server_owner() -> str:
    """The owner name of the server's own OS user (single-user servers, where every caller is it)."""
    return f"server:{getpass.getuser()}"
