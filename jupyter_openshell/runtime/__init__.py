"""Sandbox runtime: run commands in isolated sandboxes whose only way out is the policy proxy.

Public API (see docs/ARCHITECTURE.md): `get_backend(name="local")`, `exec_in`, `Backend`, `SandboxSpec`,
`Bind`, `SandboxInfo`, `ExecProcess`, `SandboxError`, `KILL_GRACE_S`. Backends live in private modules and are
chosen by name, so callers never import one directly. This module must never import a backend eagerly,
nor the dataclass types (`_types`) before they are asked for.
"""

from __future__ import annotations

from ._errors import KILL_GRACE_S, SandboxError

TYPE_CHECKING = False  # (not typing.TYPE_CHECKING: `openshell sandbox exec` does not import typing)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from ._types import Backend, Bind, ExecProcess, SandboxInfo, SandboxSpec

_TYPES = ("Backend", "Bind", "ExecProcess", "SandboxInfo", "SandboxSpec")


def __getattr__(name: str) -> Any:
    """The dataclass types, loaded on first use (`openshell sandbox exec` never needs them)."""
    if name in _TYPES:
        from . import _types

        return getattr(_types, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

BACKENDS = ("local",)


def get_backend(name: str = "local") -> Backend:
    """The backend called `name` ("local": bubblewrap on this machine)."""
    if name == "local":
        from ._local import LocalBackend

        return LocalBackend()
    raise SandboxError(f"unknown sandbox backend {name!r}; available: {', '.join(BACKENDS)}")


def exec_in(name: str, argv: Sequence[str], *, backend: str = "local", **stdio_env_cwd: Any) -> ExecProcess:
    """`get_backend(backend).exec(name, argv, ...)` without loading what only `create` needs: the fast
    path of `openshell sandbox exec` (same keywords: env, cwd, stdin, stdout, stderr)."""
    if backend == "local":
        from ._attach import exec_local

        return exec_local(name, argv, **stdio_env_cwd)
    return get_backend(backend).exec(name, argv, **stdio_env_cwd)


__all__ = [
    "BACKENDS",
    "KILL_GRACE_S",
    "Backend",
    "Bind",
    "ExecProcess",
    "SandboxError",
    "SandboxInfo",
    "SandboxSpec",
    "exec_in",
    "get_backend",
]
