"""`openshell sandbox gc`: remove what crashed or exited sandboxes left, and sandboxes whose owner (the
Jupyter server or kernel host that started them) is gone, over every installed backend; print each thing
removed and why.

It must never remove a running sandbox whose owner lives, nor one without an owner (CLI sandboxes).
"""

from __future__ import annotations

import sys
from typing import Any

from ..runtime import SandboxError, available_backends, backends_in_use, get_backend


def _why(item: str, info: Any) -> str:
    if info is None:
        return f"{item}: left without a record (a create that crashed)"
    owner = info.details.get("owner") or {}
    if owner.get("alive") is False:
        return f"sandbox {item}: its owner, process {owner.get('pid')}, is gone"
    if info.state == "creating":
        return f"sandbox {item}: the process creating it died"
    return f"sandbox {item}: its processes had exited"


def gc() -> int:
    used, cleaned, seen = backends_in_use(), [], 0
    for name in available_backends():  # (also those without records: what crashed CLIs left)
        try:
            backend = get_backend(name)
            before = {info.name: info for info in backend.list()} if name in used else {}
            items = backend.cleanup()
        except SandboxError as exc:
            if name in used:
                print(f"openshell sandbox gc: {name} backend skipped: {exc}", file=sys.stderr)
            continue
        seen += len(before)
        for item in items:
            print(f"removed {_why(item, before.get(item))}")
        cleaned += items
    from ..kernel.session import cleanup_stale  # kernel channels whose host died

    kernels = [name for name in cleanup_stale() if name not in cleaned]
    for name in kernels:
        print(f"removed kernel sandbox {name}: the process that served its kernel is gone")
    if not cleaned and not kernels:
        print(f"nothing to clean: {seen} sandbox(es), none exited or orphaned")
    return 0
