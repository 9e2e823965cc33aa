"""The runtime's error type, its check of sandbox names and the kill grace: what even the lightest path
needs.

Split from `_types` so that `openshell sandbox exec` does not load dataclasses; it must never import
anything beyond `jupyter_openshell.names` (the one name rule, standard library `re` only).
"""

from __future__ import annotations

from ..names import InvalidName, check_sandbox_name


class SandboxError(RuntimeError):
    """A sandbox operation failed; the message says what failed and what to do about it."""


def check_name(name: str) -> str:
    """`names.check_sandbox_name`, as a SandboxError."""
    try:
        return check_sandbox_name(name)
    except InvalidName as exc:
        raise SandboxError(str(exc)) from None


# How long a caller should wait for a sandbox to confirm `kill()` before it `abandon()`s the command
# (code inside a sandbox can stop its own agent; no host thread may wait on it forever).
KILL_GRACE_S = 5.0
