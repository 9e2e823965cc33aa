"""The one rule for sandbox names, and for the policy names built on them (a sandbox's name, or "default":
the host caller's policy). Every layer (runtime, proxy registrations, policy store, REST) checks names here,
so they agree and say the same thing. It must never import anything beyond the standard library's `re`:
the CLI's `sandbox exec` path checks a name on every call.
"""

from __future__ import annotations

import re

HOST_CALLER = "default"  # the policy of callers that are no sandbox (the proxy's TCP listener)
SANDBOX_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}\Z")
RULE = (
    "use 1-63 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit, not "
    f"{HOST_CALLER!r} and not ending in '.history' (e.g. 'agent-1')"
)


class InvalidName(ValueError):
    """A name breaks the rule; the message says the rule."""


def is_sandbox_name(name: object) -> bool:
    return (
        isinstance(name, str)
        and SANDBOX_NAME_RE.match(name) is not None
        and name != HOST_CALLER
        and not name.endswith(".history")  # (the policy store keeps a policy's history in <name>.history/)
    )


def check_sandbox_name(name: object) -> str:
    """`name` if it is a valid sandbox name, else InvalidName saying the rule."""
    if not is_sandbox_name(name):
        raise InvalidName(f"invalid sandbox name {name!r}: {RULE}")
    return name  # type: ignore[return-value]


def check_policy_name(name: object) -> str:
    """A sandbox's name or "default" (the host caller); else InvalidName."""
    if name == HOST_CALLER:
        return HOST_CALLER
    if not is_sandbox_name(name):
        raise InvalidName(f"invalid policy name {name!r}: the name of a sandbox ({RULE}), or {HOST_CALLER!r}")
    return name  # type: ignore[return-value]
