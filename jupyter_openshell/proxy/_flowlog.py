"""The flow log: one JSON object per decision, appended to `<state>/flows/flows.jsonl`, and the
in-memory ring of recent records that the control API serves.

Every proxy process (each worker) appends whole lines with a single O_APPEND write, so lines from
several processes never interleave. `FlowRing` follows the same file: it reads what was appended since
its last look, so it sees the records of every worker. Records never contain header values, query
strings or bodies, so a secret can never reach this file.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections import deque
from pathlib import Path
from typing import Any

FIELDS = ("id", "ts", "sandbox", "client", "method", "scheme", "host", "port", "path", "decision", "rule",
          "reason", "policy_version", "status", "bytes_in", "bytes_out", "duration_ms", "route")


class FlowLog:
    """Append-only writer (one `os.write` per record)."""

    def __init__(self, path: Path):
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._ids = itertools.count(1)
        self._prefix = f"{int(time.time() * 1000):x}-{os.getpid():x}-"

    def new_id(self) -> str:
        return f"{self._prefix}{next(self._ids)}"

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=True, default=str) + "\n"
        os.write(self._fd, line.encode())

    def close(self) -> None:
        os.close(self._fd)


class FlowRing:
    """The most recent `size` records of the flow log, caught up from the file on each query."""

    def __init__(self, path: Path, size: int = 10000, seed_bytes: int = 4 << 20):
        self.path = path
        self._ring: deque[dict[str, Any]] = deque(maxlen=size)
        self._offset = 0
        self._partial = b""
        try:
            length = path.stat().st_size
        except OSError:
            length = 0
        if length > seed_bytes:
            self._offset = length - seed_bytes
            self._skip_first = True
        else:
            self._skip_first = False

    def _catch_up(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size < self._offset:  # rotated or truncated
                    self._offset, self._partial = 0, b""
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if self._skip_first and lines:
            lines.pop(0)
            self._skip_first = False
        for line in lines:
            try:
                self._ring.append(json.loads(line))
            except ValueError:
                continue

    def query(self, sandbox: str | None = None, since: float = 0, limit: int = 200) -> list[dict[str, Any]]:
        """Records, oldest first. `since` > 0: the first `limit` with ts >= since; else the newest."""
        self._catch_up()
        limit = max(0, limit)
        rows = [r for r in self._ring
                if (sandbox is None or r.get("sandbox") == sandbox) and r.get("ts", 0) >= since]
        return rows[:limit] if since > 0 else rows[-limit:] if limit else []
