"""`openshell sandbox ls`: the table of sandboxes, their limits and what enforces each one, then each
sandbox's walls per layer (network, filesystem, syscalls, user, resources).

Formatting only; it must never change a sandbox.
"""

from __future__ import annotations

import time
from typing import Any


def _size(value: int | None) -> str:
    if not value:
        return "-"
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if value >= 1 << shift and value % (1 << shift) == 0:
            return f"{value >> shift}{unit}"
    return str(value)


def _cell(value: str, entry: dict) -> str:
    """A limit and what enforces it: "2G cgroup", "2G RLIMIT_AS", "1.0 NOT-ENFORCED", "512M tmpfs"."""
    by = entry.get("by", "")
    if not by:
        return value
    if by == "none":
        return f"{value} NOT-ENFORCED" if value != "-" else value
    return f"{value} {'cgroup' if by.startswith('cgroup') else by.replace(' + ', '+')}"


def print_table(infos: list[Any]) -> None:
    rows = [("NAME", "STATE", "BACKEND", "IMAGE", "ADDRESS", "ENFORCEMENT", "CPU", "MEMORY", "PIDS", "DISK",
             "AGE", "WORKSPACE")]
    notes: dict[str, None] = {}  # (ordered, without repeats)
    layers: list[str] = []
    for i in infos:
        lim, res = i.limits, i.details.get("resources", {})
        disk = res.get("disk", {})
        notes.update({f"{name}: {e['note']}": None for name, e in res.items() if e.get("note")})
        rows.append(
            (
                i.name,
                i.state,
                i.backend,
                i.image or "-",
                i.address or "-",
                i.enforcement.get("resources") or "-",
                _cell(str(lim.get("cpu") or "-"), res.get("cpu", {})),
                _cell(_size(lim.get("memory")), res.get("memory", {})),
                _cell(str(lim.get("pids") or "-"), res.get("pids", {})),
                _cell(_size(disk.get("limit") or i.details.get("tmp_size")), disk),
                f"{int(time.time() - i.created)}s",
                i.workspace,
            )
        )
        if i.enforcement:
            layers.append(f"  {i.name}: " + "; ".join(f"{k}: {v}" for k, v in i.enforcement.items()))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    for note in notes:
        print(f"  {note}")
    if layers:
        print("enforcement per layer:")
        print("\n".join(layers))
