"""Sandbox runtime: run commands in isolated sandboxes whose only way out is the policy proxy.

Public API (see docs/ARCHITECTURE.md): `get_backend(name="local")`, `Backend`, `SandboxSpec`, `Bind`,
`SandboxInfo`, `ExecProcess`, `SandboxError`, `KILL_GRACE_S`. Backends live in private modules and are
chosen by name, so callers never import one directly. This module must never import a backend eagerly.
"""

from __future__ import annotations

from ._types import KILL_GRACE_S, Backend, Bind, ExecProcess, SandboxError, SandboxInfo, SandboxSpec

BACKENDS = ("local",)


def get_backend(name: str = "local") -> Backend:
    """The backend called `name` ("local": bubblewrap on this machine)."""
    if name == "local":
        from ._local import LocalBackend

        return LocalBackend()
    raise SandboxError(f"unknown sandbox backend {name!r}; available: {', '.join(BACKENDS)}")


__all__ = [
    "BACKENDS",
    "KILL_GRACE_S",
    "Backend",
    "Bind",
    "ExecProcess",
    "SandboxError",
    "SandboxInfo",
    "SandboxSpec",
    "get_backend",
]
