"""`openshell sandbox gc`: remove what crashed or exited sandboxes left, and sandboxes whose owner (the
Jupyter server or kernel host that started them) is gone, over every installed backend
(`services.sandboxes.cleanup`), and the kernel sandboxes whose host died; print each thing removed and why.

It must never remove a running sandbox whose owner lives, nor one without an owner (CLI sandboxes).
"""

from __future__ import annotations

import sys
from typing import Any

from ..runtime import SandboxError


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
    from ..kernel.session import cleanup_stale  # kernel channels whose host died
    from ..services import sandboxes

    def skipped(backend: str, exc: SandboxError) -> None:
        print(f"openshell sandbox gc: {backend} backend skipped: {exc}", file=sys.stderr)

    cleaned, seen = sandboxes.cleanup(skipped)
    for item, before in cleaned:
        print(f"removed {_why(item, before)}")
    names = {item for item, _ in cleaned}
    kernels = [name for name in cleanup_stale() if name not in names]
    for name in kernels:
        print(f"removed kernel sandbox {name}: the process that served its kernel is gone")
    if not cleaned and not kernels:
        print(f"nothing to clean: {seen} sandbox(es), none exited or orphaned")
    return 0
