"""The runtime's public types: what every backend (local bubblewrap today, Kubernetes later) takes and
returns. Callers depend only on these and on `get_backend`; this module must never import a backend.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from ._errors import KILL_GRACE_S, SandboxError, check_name

__all__ = [
    "KILL_GRACE_S",
    "Backend",
    "Bind",
    "ExecProcess",
    "SandboxError",
    "SandboxInfo",
    "SandboxSpec",
    "check_name",
]


@dataclass(frozen=True)
class Bind:
    """An extra host path made visible in the sandbox (read-only unless `writable`)."""

    source: str
    target: str
    writable: bool = False


@dataclass(frozen=True)
class SandboxSpec:
    """What to create. `name=None` picks a fresh name; `policy_file=None` means deny all egress with
    default resources; `workspace=None` makes a private one under the state directory; `gpu=None`
    takes the policy's `gpu`; `env` is added to every command's environment; `image` names the
    container image for backends that run images (None: the backend's default; the local backend
    refuses one); `owner_pid`: the host process the sandbox serves (a Jupyter server, a kernel's host):
    once it is gone (pid + start time), `cleanup()` removes the sandbox (None: it lives until removed)."""

    name: str | None = None
    policy_file: str | Path | None = None
    workspace: str | Path | None = None
    gpu: bool | None = None
    binds: Sequence[Bind] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    image: str | None = None
    owner_pid: int | None = None


@dataclass
class SandboxInfo:
    """A sandbox as the backend sees it now. `state`: running | stopped | exited (its processes are
    gone without a stop, e.g. timeout or crash). `enforcement`: how resources are limited
    ("cgroup v1", "cgroup v2" or "rlimits")."""

    name: str
    state: str
    backend: str
    address: str
    workspace: str
    policy_file: str
    created: float
    enforcement: str = ""
    limits: dict[str, Any] = field(default_factory=dict)
    gpu: bool = False
    pid: int | None = None
    uid: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ExecProcess(Protocol):
    """A command running in a sandbox, shaped like `subprocess.Popen`."""

    args: list[str]
    pid: int | None  # the command's pid inside the sandbox's PID namespace
    returncode: int | None  # negative: killed by that signal
    stdin: IO[bytes] | None
    stdout: IO[bytes] | None
    stderr: IO[bytes] | None

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def communicate(self, input: bytes | None = None, timeout: float | None = None) -> tuple[Any, Any]: ...
    def send_signal(self, sig: int) -> None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    def abandon(self) -> None:
        """Give up on a command whose sandbox no longer answers (returncode becomes -SIGKILL)."""


class Backend(abc.ABC):
    """One way of running sandboxes. Every method raises `SandboxError` on failure."""

    name: str = ""

    @abc.abstractmethod
    def create(self, spec: SandboxSpec) -> SandboxInfo:
        """Start a sandbox and return once it accepts `exec`."""

    @abc.abstractmethod
    def exec(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: Any = None,
        stdout: Any = None,
        stderr: Any = None,
    ) -> ExecProcess:
        """Run `argv` inside the sandbox. stdin/stdout/stderr: None (inherit the caller's), an fd, a
        file object, `subprocess.PIPE` or `subprocess.DEVNULL`, as for `subprocess.Popen`."""

    @abc.abstractmethod
    def stop(self, name: str) -> SandboxInfo:
        """End every process of the sandbox, keep its state (workspace, policy) for inspection."""

    @abc.abstractmethod
    def status(self, name: str) -> SandboxInfo: ...

    @abc.abstractmethod
    def list(self) -> list[SandboxInfo]: ...

    @abc.abstractmethod
    def set_policy(self, name: str, text: str) -> Any:
        """Validate and apply a new policy; its network part applies to the sandbox's next request."""

    @abc.abstractmethod
    def get_policy(self, name: str) -> str: ...

    @abc.abstractmethod
    def destroy(self, name: str) -> None:
        """End every process (daemonised ones included) and remove the sandbox's state."""

    @abc.abstractmethod
    def logs(self, name: str) -> str: ...

    def cleanup(self) -> list[str]:
        """Find what an earlier process left (dead sandboxes, sandboxes whose owner process is gone,
        orphan processes) and remove it; returns the names cleaned ("pid N" for an orphan process)."""
        return []
