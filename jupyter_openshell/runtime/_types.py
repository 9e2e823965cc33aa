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
    """What to create. `name=None` picks a fresh name; `policy`: the policy's YAML text (None: deny all
    egress with default resources), `policy_source` names where it came from in error reports (a file, "the
    REST request"); `workspace=None` makes a private one; `gpu=None` takes the policy's `gpu`; `env` is
    added to every command's environment; `image` names the container image for backends that run images
    (None: the backend's default; the local backend refuses one); `owner_pid`: the host process the sandbox
    serves (a Jupyter server, a kernel's host): once it is gone (pid + start time), `cleanup()` removes the
    sandbox (None: it lives until removed); `kernel`: the sandbox will run kernels, so the backend sets up
    their channel (`Backend.kernel_channel`)."""

    name: str | None = None
    policy: str | None = None
    policy_source: str | None = None
    workspace: str | Path | None = None
    gpu: bool | None = None
    binds: Sequence[Bind] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    image: str | None = None
    owner_pid: int | None = None
    kernel: bool = False

    @classmethod
    def from_policy_file(cls, path: str | Path | None, **fields: Any) -> SandboxSpec:
        """The spec with the text of policy file `path` (None: no policy); the convenience of the CLI's
        `--policy FILE`. SandboxError if the file cannot be read."""
        if path is None:
            return cls(**fields)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise SandboxError(f"cannot read policy file {path}: {exc.strerror}") from exc
        return cls(policy=text, policy_source=str(path), **fields)

    def source(self) -> str:
        """Where the policy came from, for messages."""
        return self.policy_source or f"<policy of sandbox {self.name or '(new)'}>"


@dataclass
class SandboxInfo:
    """A sandbox as its backend sees it now, the same shape for every backend.

    `state`: running | stopped | exited (its processes are gone without a stop, e.g. timeout or crash) |
    creating. `address`: the sandbox's own network address where it has one (a pod IP; local: its legacy
    127.77.X.Y label), else "". `enforcement`: each wall and what makes it, per layer: "network",
    "filesystem", "syscalls", "user", "resources" (e.g. {"resources": "cgroup v2", ...}; the resources
    layer is what `openshell sandbox ls` shows in its ENFORCEMENT column). `image`: the container image,
    None where the backend runs none (local). `details`: backend-specific facts; every backend that runs
    sandboxes on this host adds "pid" (host pid of the sandbox's top process: the local shim, a container's
    init) and "uid" (the host uid its processes run as); "resources" says what enforces each limit."""

    name: str
    state: str
    backend: str
    address: str
    workspace: str
    policy_file: str
    created: float
    enforcement: dict[str, str] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)
    gpu: bool = False
    image: str | None = None
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


class KernelChannel(abc.ABC):
    """How the ZMQ sockets of a kernel in one sandbox reach the host: what `Backend.kernel_channel` returns.

    The kernel binds its five sockets where `endpoint()` says (inside the sandbox); the host's relay
    (`kernel.relay.Relay`) connects to `relay_base` (an ipc path prefix, or `tcp://ADDRESS` with
    `relay_ports`). `runner` is the command that runs, inside, the Python module named after it (the kernel;
    isolated from the workspace where the backend can: `python -I -m`) and `env` what it needs in its
    environment. `launch(connection)` hands the kernel its connection information (a file in the
    channel, or the environment) and returns (extra argv, extra env) for its command; `wait_ready(process,
    timeout)` returns once the kernel has bound its sockets and raises `SandboxError` saying why it did not
    (it exited, it timed out, it answered something else). `host_dir`/`inside_dir`: a host directory whose
    UNIX sockets the kernel sees at `inside_dir` (the kernel's policy broker), None where the backend carries
    none into the sandbox. A channel holds nothing on the host beyond its sandbox: `destroy` releases it."""

    runner: Sequence[str] = ()
    env: Mapping[str, str] = {}
    relay_base: str = ""
    relay_ports: Mapping[str, int] | None = None
    host_dir: Path | None = None
    inside_dir: str | None = None

    @abc.abstractmethod
    def endpoint(self) -> dict[str, Any]:
        """{"transport", "ip", "shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"}: where
        the kernel binds, as its connection file says it (without the key)."""

    @abc.abstractmethod
    def launch(self, connection: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
        """Give the kernel its connection information (`endpoint()` plus the key); (argv, env) to add."""

    @abc.abstractmethod
    def wait_ready(self, process: ExecProcess, timeout: float) -> None:
        """Return once the kernel `process` serves; SandboxError (why) if it exits or `timeout` passes."""


class Backend(abc.ABC):
    """One way of running sandboxes. Every method raises `SandboxError` on failure. `host_paths`: whether
    its sandboxes can see host paths (`SandboxSpec.workspace`, `binds`; a pod cannot)."""

    name: str = ""
    host_paths: bool = True

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

    def kernel_channel(self, name: str) -> KernelChannel:
        """How a kernel in sandbox `name` (created with `SandboxSpec(kernel=True)`) reaches the host."""
        raise SandboxError(f"the {self.name} backend cannot run kernels")

    def cleanup(self) -> list[str]:
        """Find what an earlier process left (dead sandboxes, sandboxes whose owner process is gone,
        orphan processes) and remove it; returns the names cleaned ("pid N" for an orphan process)."""
        return []
