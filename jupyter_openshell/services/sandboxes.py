"""Sandboxes for the layers above the runtime: create on a chosen backend, find a sandbox's backend, list
every backend's sandboxes, stop, destroy, logs, exec, cleanup, the kernel channel, and the JSON form the REST
API and the CLI print.

A sandbox's backend is recorded with it (`runtime.backend_of`): every call after `create` goes to that
backend, whatever the default is now. It must never reach a backend's private modules, and never hide a
backend's failure to answer: `list_all` reports it through `on_error`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..runtime import KILL_GRACE_S, Bind, KernelChannel, SandboxError, SandboxInfo, SandboxSpec

__all__ = [
    "KILL_GRACE_S",
    "Bind",
    "KernelChannel",
    "SandboxError",
    "SandboxInfo",
    "SandboxSpec",
    "backend",
    "backend_of",
    "backends_in_use",
    "create",
    "default_backend",
    "destroy",
    "exec",
    "kernel_channel",
    "list_all",
    "logs",
    "status",
    "stop",
    "to_json",
]


def default_backend() -> str:
    """$OPENSHELL_BACKEND, else "local"."""
    from ..runtime import default_backend as chosen

    return chosen()


def backend(name: str | None = None) -> Any:
    """Backend `name` (None: the default); SandboxError if it is not installed."""
    from ..runtime import get_backend

    return get_backend(name)


def backend_of(sandbox: str) -> Any:
    """The backend that made `sandbox`; SandboxError if there is no such sandbox."""
    from ..runtime import backend_of as of

    return of(sandbox)


def backends_in_use() -> list[str]:
    from ..runtime import backends_in_use as used

    return used()


def available_backends() -> list[str]:
    from ..runtime import available_backends as installed

    return installed()


def create(spec: SandboxSpec, backend_name: str | None = None) -> SandboxInfo:
    """Create `spec` on backend `backend_name` (None: the default); returns once it accepts exec."""
    return backend(backend_name).create(spec)


def status(name: str) -> SandboxInfo:
    return backend_of(name).status(name)


def stop(name: str) -> SandboxInfo:
    return backend_of(name).stop(name)


def destroy(name: str) -> None:
    backend_of(name).destroy(name)


def logs(name: str) -> str:
    return backend_of(name).logs(name)


def exec(name: str, argv: Sequence[str], **stdio_env_cwd: Any) -> Any:
    """Run `argv` in sandbox `name` (keywords: env, cwd, stdin, stdout, stderr); an `ExecProcess`."""
    return backend_of(name).exec(name, argv, **stdio_env_cwd)


def kernel_channel(name: str) -> KernelChannel:
    """How a kernel's sockets in sandbox `name` (created with `SandboxSpec(kernel=True)`) reach the host."""
    return backend_of(name).kernel_channel(name)


def list_all(on_error: Callable[[str, SandboxError], None] | None = None) -> list[SandboxInfo]:
    """The sandboxes of every backend with records here; a backend that cannot answer is passed to
    `on_error(backend name, error)` (None: skipped) and the others are still listed."""
    infos: list[SandboxInfo] = []
    for name in backends_in_use():
        try:
            infos += backend(name).list()
        except SandboxError as exc:
            if on_error is not None:
                on_error(name, exc)
    return infos


def cleanup(
    on_error: Callable[[str, SandboxError], None] | None = None,
) -> tuple[list[tuple[str, SandboxInfo | None]], int]:
    """Every installed backend removes what crashed or exited sandboxes left and sandboxes whose owner is
    gone (`Backend.cleanup`). ([(item, the sandbox as it was before, None for an item without a record)],
    how many sandboxes there were); a backend with sandboxes here that cannot answer goes to `on_error`."""
    used, cleaned, seen = backends_in_use(), [], 0
    for name in available_backends():  # (also those without records: what crashed CLIs left)
        try:
            chosen = backend(name)
            before = {info.name: info for info in chosen.list()} if name in used else {}
            items = chosen.cleanup()
        except SandboxError as exc:
            if name in used and on_error is not None:
                on_error(name, exc)
            continue
        seen += len(before)
        cleaned += [(item, before.get(item)) for item in items]
    return cleaned, seen


def to_json(infos: Iterable[SandboxInfo]) -> list[dict]:
    """The JSON form of sandboxes (REST API, `ls --json`): every `SandboxInfo` field (name, state, backend,
    image, enforcement per layer, created, ...) plus `policy_version`, the version the proxy enforces now for
    that very instance (None when the proxy does not run, has not loaded it, or is not this host's: a
    Kubernetes sandbox's proxy runs in its cluster)."""
    from .proxy import registrations

    infos = list(infos)
    registered = registrations() if infos else {}
    out = []
    for info in infos:
        data = info.to_dict()
        entry = registered.get(info.name) or {}
        same = entry.get("created") == info.created
        data["policy_version"] = entry.get("policy_version") if same else None
        out.append(data)
    return out
