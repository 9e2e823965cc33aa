"""The runtime's error type, sandbox names and the kill grace: what even the lightest path needs.

Split from `_types` so that `openshell sandbox exec` does not load dataclasses; it must never import
anything beyond the standard library's `re`.
"""

from __future__ import annotations

import re

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class SandboxError(RuntimeError):
    """A sandbox operation failed; the message says what failed and what to do about it."""


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise SandboxError(
            f"invalid sandbox name {name!r}: use 1-63 characters of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit (e.g. 'agent-1')"
        )
    return name


# How long a caller should wait for a sandbox to confirm `kill()` before it `abandon()`s the command
# (code inside a sandbox can stop its own agent; no host thread may wait on it forever).
KILL_GRACE_S = 5.0
