"""Sandbox runtime: run commands in isolated sandboxes whose only way out is the policy proxy.

Public API (see docs/ARCHITECTURE.md): `get_backend(name=None)`, `backend_of(sandbox)`,
`available_backends()`, `backends_in_use()`, `exec_in`, `Backend`, `SandboxSpec`, `Bind`, `SandboxInfo`,
`ExecProcess`, `KernelChannel`, `SandboxError`, `KILL_GRACE_S`, `process_start`, `process_alive`.
Backends are plugins: classes named by the entry point
group `jupyter_openshell.backends` (the built-in ones are also known without scanning entry points, which
keeps the CLI fast); every backend records its sandboxes under `<state>/sandboxes/<name>/sandbox.json`
with its name in "backend", so any process finds the backend of a sandbox. This module must never import
a backend eagerly, nor the dataclass types (`_types`) before they are asked for (`openshell sandbox exec`
needs neither).
"""

from __future__ import annotations

import os
from importlib import import_module

from ._errors import KILL_GRACE_S, SandboxError

TYPE_CHECKING = False  # (not typing.TYPE_CHECKING: `openshell sandbox exec` does not import typing)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from ._types import Backend, Bind, ExecProcess, KernelChannel, SandboxInfo, SandboxSpec

ENTRY_POINT_GROUP = "jupyter_openshell.backends"
BACKEND_ENV = "OPENSHELL_BACKEND"
_BUILTIN = {
    "local": "jupyter_openshell.runtime._local:LocalBackend",
    "docker": "jupyter_openshell.runtime.docker:DockerBackend",
    "kubernetes": "jupyter_openshell.runtime.kubernetes:KubernetesBackend",
}
_TYPES = ("Backend", "Bind", "ExecProcess", "KernelChannel", "SandboxInfo", "SandboxSpec")


def __getattr__(name: str) -> Any:
    """The dataclass types, loaded on first use."""
    if name in _TYPES:
        from . import _types

        return getattr(_types, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _plugins() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_backends() -> list[str]:
    """Names of every installed backend ("local" first)."""
    return sorted({**_plugins(), **_BUILTIN}, key=lambda n: (n != "local", n))


def default_backend() -> str:
    """$OPENSHELL_BACKEND, else "local"."""
    return os.environ.get(BACKEND_ENV) or "local"


def get_backend(name: str | None = None) -> Backend:
    """The backend called `name` (None: `default_backend()`); "local" is bubblewrap on this machine."""
    name = name or default_backend()
    target = _BUILTIN.get(name) or _plugins().get(name)
    if target is None:
        raise SandboxError(f"unknown sandbox backend {name!r}; installed: {', '.join(available_backends())}")
    module, _, attr = target.partition(":")
    return getattr(import_module(module), attr)()


def backends_in_use() -> list[str]:
    """Names of the backends that have sandboxes recorded in this state directory ("local" first)."""
    from . import _state

    used = {(_state.read(n) or {}).get("backend") or "local" for n in _state.names()}
    return sorted(used, key=lambda n: (n != "local", n))


def backend_of(sandbox: str) -> Backend:
    """The backend that made sandbox `sandbox` (from its record); SandboxError if there is none."""
    from ._attach import record

    return get_backend(record(sandbox).get("backend") or "local")


def process_start(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot; None: it does not exist): with the pid, what
    tells a process from a later one that got the same pid."""
    from ._state import start_time

    return start_time(pid)


def process_alive(pid: int | None, started: int | None) -> bool:
    """True while `pid` is still the process that started at `started` and has not exited."""
    from ._state import alive

    return alive(pid, started)


def exec_in(
    name: str, argv: Sequence[str], *, backend: str | None = None, **stdio_env_cwd: Any
) -> ExecProcess:
    """`backend_of(name).exec(name, argv, ...)` (or backend `backend`'s) without loading what only `create`
    needs for a local sandbox: the fast path of `openshell sandbox exec` (keywords: env, cwd, stdin,
    stdout, stderr)."""
    from ._attach import exec_local, record

    chosen = backend or record(name).get("backend") or "local"
    if chosen == "local":
        return exec_local(name, argv, **stdio_env_cwd)
    return get_backend(chosen).exec(name, argv, **stdio_env_cwd)


__all__ = [
    "BACKEND_ENV",
    "ENTRY_POINT_GROUP",
    "KILL_GRACE_S",
    "Backend",
    "Bind",
    "ExecProcess",
    "KernelChannel",
    "SandboxError",
    "SandboxInfo",
    "SandboxSpec",
    "available_backends",
    "backend_of",
    "backends_in_use",
    "default_backend",
    "exec_in",
    "get_backend",
    "process_alive",
    "process_start",
]
