"""`openshell sandbox gc`: remove what crashed or exited sandboxes left, and sandboxes whose owner (the
Jupyter server or kernel host that started them) is gone; print each thing removed and why.

It must never remove a running sandbox whose owner lives, nor one without an owner (CLI sandboxes).
"""

from __future__ import annotations

from typing import Any


def _why(item: str, info: Any) -> str:
    if info is None:
        return f"{item}: a sandbox process whose record was lost (a create that crashed)"
    owner = info.details.get("owner") or {}
    if owner.get("alive") is False:
        return f"sandbox {item}: its owner, process {owner.get('pid')}, is gone"
    return f"sandbox {item}: its processes had exited"


def gc(backend: Any, backend_name: str) -> int:
    before = {info.name: info for info in backend.list()}
    cleaned = backend.cleanup()
    for item in cleaned:
        print(f"removed {_why(item, before.get(item))}")
    from ..kernel.session import cleanup_stale  # kernel channels whose host died

    kernels = [name for name in cleanup_stale(backend_name) if name not in cleaned]
    for name in kernels:
        print(f"removed kernel sandbox {name}: the process that served its kernel is gone")
    if not cleaned and not kernels:
        print(f"nothing to clean: {len(before)} sandbox(es), none exited or orphaned")
    return 0
