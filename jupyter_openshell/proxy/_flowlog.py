"""The flow log: one JSON object per decision, appended to `<state>/flows/flows.jsonl`, numbered, rotated by
size, and the in-memory ring of recent records that the control API serves.

One writer: the primary process owns the file (`FlowLog`). Workers hand their records over a pipe
(`PipeFlowLog`, one `os.write` per record, as many syscalls as appending to the file); the primary gives
every record, its own and the workers', the next `seq` (monotonic, contiguous, in file order; continued
from the last record of the log at start-up) and appends it. So `seq` is a cursor that survives proxy
restarts, and rotation can never lose or split a record: it happens between two writes of the only
writer. Rotated files are `flows.jsonl.1` (newest) .. `flows.jsonl.<keep>`; `log_files`/`read_records`
follow a cursor across them. Records never contain header values, query strings or bodies, so a secret
can never reach these files.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

FIELDS = ("seq", "id", "ts", "sandbox", "sandbox_created", "client", "method", "scheme", "host", "port",
          "path", "decision", "rule", "reason", "policy_version", "status", "bytes_in", "bytes_out",
          "duration_ms", "route")
ROTATE_BYTES = 64 << 20
ROTATE_KEEP = 4


def _ids() -> tuple[str, Iterator[int]]:
    return f"{int(time.time() * 1000):x}-{os.getpid():x}-", itertools.count(1)


def log_files(path: Path) -> list[Path]:
    """The flow log's files, oldest first: rotated ones (`path.N` .. `path.1`), then `path` itself."""
    rotated = []
    for p in path.parent.glob(path.name + ".*"):
        suffix = p.name[len(path.name) + 1:]
        if suffix.isdigit():
            rotated.append((int(suffix), p))
    return [p for _, p in sorted(rotated, reverse=True)] + [path]


def _open_all(path: Path) -> list[Any]:
    """Open every file of the log, oldest first. Opened newest first: rotation only moves a file to a
    higher number, so walking up the numbers sees each file at least once (duplicates by inode dropped)."""
    handles, seen = [], set()
    for p in reversed(log_files(path)):
        try:
            fh = open(p, "rb")  # noqa: SIM115 (closed by the caller)
        except FileNotFoundError:
            continue
        ino = os.fstat(fh.fileno()).st_ino
        if ino in seen:
            fh.close()
            continue
        seen.add(ino)
        handles.append(fh)
    handles.reverse()
    return handles


def _first_seq(fh: Any) -> int | None:
    fh.seek(0)
    line = fh.readline()
    with contextlib.suppress(ValueError, AttributeError):
        seq = json.loads(line).get("seq")
        return seq if isinstance(seq, int) else None
    return None


def read_records(path: Path, after: int = -1) -> Iterator[dict[str, Any]]:
    """Every record of the log (rotated files included) with `seq` > `after`, in log order; with the
    default `after` also records written before numbering existed (no `seq`)."""
    handles = _open_all(path)
    try:
        start = 0
        if after >= 0:  # skip whole files whose successor starts at or before the cursor
            for i in range(len(handles) - 1):
                first = _first_seq(handles[i + 1])
                if first is not None and first <= after + 1:
                    start = i + 1
        for fh in handles[start:]:
            fh.seek(0)
            for line in fh:
                if not line.endswith(b"\n"):
                    break  # a record still being written
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                seq = rec.get("seq") if isinstance(rec, dict) else None
                if after < 0 or (isinstance(seq, int) and seq > after):
                    yield rec
    finally:
        for fh in handles:
            fh.close()


def _tail_records(path: Path, max_bytes: int) -> list[bytes]:
    """Complete lines from the end of the log, newest file last, about `max_bytes` in all."""
    out: list[bytes] = []
    budget = max_bytes
    for fh in reversed(_open_all(path)):
        with fh:
            if budget <= 0:
                continue
            size = os.fstat(fh.fileno()).st_size
            start = max(0, size - budget)
            fh.seek(start)
            data = fh.read(size - start)
            budget -= len(data)
            lines = data.split(b"\n")
            lines.pop()  # after the last newline: empty, or a record still being written
            if start:
                lines = lines[1:]  # may start mid-record
            out[:0] = lines
    return [line for line in out if line]


def last_seq(path: Path) -> int:
    """The highest `seq` in the log (0 if none): where numbering continues after a restart."""
    for line in reversed(_tail_records(path, 1 << 16)):
        with contextlib.suppress(ValueError, AttributeError):
            seq = json.loads(line).get("seq")
            if isinstance(seq, int):
                return seq
    return 0


class FlowLog:
    """The writer (primary process): numbers records, appends each batch with one `os.write`, rotates when
    the file would pass `max_bytes` (keeping `keep` rotated files) and feeds `sink` (the ring)."""

    def __init__(self, path: Path, max_bytes: int = ROTATE_BYTES, keep: int = ROTATE_KEEP,
                 sink: Callable[[int, bytes], None] | None = None):
        if max_bytes < 1 or keep < 1:
            raise ValueError("flow log rotation needs max_bytes >= 1 and keep >= 1")
        self.path, self.max_bytes, self.keep, self.sink = path, max_bytes, keep, sink
        self._prefix, self._ids = _ids()
        self._seq = last_seq(path)
        self._open()

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._size = os.fstat(self._fd).st_size

    @property
    def seq(self) -> int:
        return self._seq

    def new_id(self) -> str:
        return f"{self._prefix}{next(self._ids)}"

    def write(self, record: dict[str, Any]) -> None:
        self.write_lines([json.dumps(record, separators=(",", ":"), ensure_ascii=True, default=str)
                          .encode()])

    def write_lines(self, lines: Iterable[bytes]) -> None:
        """Append records given as JSON object lines (no newline, no `seq`), each numbered in turn."""
        out = []
        for line in lines:
            if not (line.startswith(b"{") and line.endswith(b"}")) or line == b"{}":
                continue  # never a record: a record is a non-empty JSON object
            self._seq += 1
            numbered = b'{"seq":%d,%s' % (self._seq, line[1:])
            out.append(numbered)
            if self.sink is not None:
                self.sink(self._seq, numbered)
        if not out:
            return
        data = b"\n".join(out) + b"\n"
        if self._size and self._size + len(data) > self.max_bytes:
            self.rotate()
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._size += len(data)

    def rotate(self) -> None:
        """`path` becomes `path.1` (older ones move up, the oldest beyond `keep` goes); a new `path`."""
        os.close(self._fd)
        for i in range(self.keep, 0, -1):
            src = self.path if i == 1 else self.path.with_name(f"{self.path.name}.{i - 1}")
            with contextlib.suppress(FileNotFoundError):
                os.replace(src, self.path.with_name(f"{self.path.name}.{i}"))
        self._open()

    def close(self) -> None:
        os.close(self._fd)


class PipeFlowLog:
    """A worker's writer: one line per record to the primary's pipe (the primary numbers and appends it)."""

    def __init__(self, fd: int, path: Path):
        self.path, self._fd = path, fd
        self._prefix, self._ids = _ids()

    def new_id(self) -> str:
        return f"{self._prefix}{next(self._ids)}"

    def write(self, record: dict[str, Any]) -> None:
        data = json.dumps(record, separators=(",", ":"), ensure_ascii=True, default=str).encode() + b"\n"
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except BrokenPipeError:  # the primary is gone; this worker is about to stop too
            pass

    def close(self) -> None:
        os.close(self._fd)


class FlowRing:
    """The most recent `size` records (fed by the writer as (seq, line), parsed only when asked for)."""

    def __init__(self, path: Path, size: int = 10000, seed_bytes: int = 4 << 20):
        self.path = path
        self._ring: deque[list[Any]] = deque(maxlen=size)  # [seq, bytes | dict]
        for line in _tail_records(path, seed_bytes):
            with contextlib.suppress(ValueError, AttributeError):
                seq = json.loads(line).get("seq")
                if isinstance(seq, int):
                    self._ring.append([seq, line])

    def add(self, seq: int, line: bytes) -> None:
        self._ring.append([seq, line])

    def _rows(self, start: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
        for item in itertools.islice(self._ring, start, None):
            if isinstance(item[1], bytes):
                try:
                    item[1] = json.loads(item[1])
                except ValueError:
                    item[1] = {}
            yield item[0], item[1]

    def query(self, sandbox: str | None = None, since: float = 0, limit: int = 200, *,
              after: int | None = None, created: float | bool | None = True) -> dict[str, Any]:
        """{"flows", "next_after"}: records oldest first, of `sandbox` (None: all) and instance `created`
        (True: any; a number: that `sandbox_created`; None: records without one).
        `after` (a seq): the first `limit` later ones, from the rotated files if the ring has forgotten
        them; else `since` > 0: the first `limit` with ts >= since; else the newest `limit`. `next_after`
        is the cursor for the next call: the last record's seq, or the newest seq looked at."""
        limit = max(0, limit)

        def wanted(r: dict[str, Any]) -> bool:
            return ((sandbox is None or r.get("sandbox") == sandbox)
                    and (created is True or r.get("sandbox_created") == created))

        newest = self._ring[-1][0] if self._ring else 0
        if after is not None:
            if self._ring and after + 1 >= self._ring[0][0]:
                first = self._ring[0][0]
                contiguous = newest - first + 1 == len(self._ring)  # else (a torn line) scan it all
                rows = ((s, r) for s, r in self._rows(max(0, after + 1 - first) if contiguous else 0)
                        if s > after)
                page = [r for _, r in itertools.islice(((s, r) for s, r in rows if wanted(r)), limit)]
                scanned = newest
            else:
                page, scanned = [], after
                for r in read_records(self.path, after):
                    scanned = max(scanned, r.get("seq", scanned))
                    if wanted(r):
                        page.append(r)
                        if len(page) >= limit:
                            break
            full = len(page) >= limit and limit > 0
            return {"flows": page, "next_after": page[-1]["seq"] if full else max(after, scanned)}
        rows = [r for _, r in self._rows() if wanted(r) and r.get("ts", 0) >= since]
        page = rows[:limit] if since > 0 else rows[-limit:] if limit else []
        return {"flows": page, "next_after": newest}
