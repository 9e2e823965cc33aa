"""One sandbox running one ipykernel, whose sockets reach the host through its backend's kernel channel
(`Backend.kernel_channel`: ipc sockets in a directory bound into the sandbox on the local and docker
backends, TCP on the pod's own address on kubernetes). This module asks the channel; it never binds, chowns
or polls anything of the sandbox itself.

Each kernel gets a fresh HMAC key; the connection information the kernel gets holds only that key. Clients
never connect to the kernel's sockets: `connection_info()` is the kernel's `relay.Relay` (a host-only
directory in the kernel's home, another key), which filters what the kernel sends. The kernel's policy
broker listens where the channel carries host sockets into the sandbox. It must never pass the host's
environment (Jupyter token, other kernels' secrets) into the sandbox, and `destroy()` must leave nothing
behind. Kernel sandboxes belong to the process that started them: recorded as the sandbox's owner
(`openshell sandbox gc` removes them once it is gone, e.g. killed), and destroyed when it exits (atexit: a
Jupyter server stopped by Ctrl-C without a terminal ends by KeyboardInterrupt, without shutting its kernels
down).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from tornado.web import HTTPError

# Host variables a kernel may inherit; everything else (JUPYTER_TOKEN, JPY_*, cloud keys ...) stays out.
ENV_ALLOW = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM")
# Where the kernel looks for its broker on a backend that carries no host socket into its sandboxes
# (kubernetes): nothing answers there, and `%policy` inside says so.
NO_BROKER = "/tmp/.openshell-kernel/broker.sock"


class KernelStartError(HTTPError, RuntimeError):
    """The sandboxed kernel could not start; the message says why and what to do.

    An HTTPError so that Jupyter's kernel API answers with this message (other exceptions become a bare
    "Unhandled error"), and the notebook shows it in its "Error Starting Kernel" dialog.
    """

    def __init__(self, message: str):
        super().__init__(500, message, reason="The OpenShell sandbox of the kernel could not start")

    def __str__(self) -> str:
        return self.log_message or ""


@dataclasses.dataclass(frozen=True)
class KernelConfig:
    """What a kernel sandbox is made of; equal configs are interchangeable (the warm-pool key)."""

    backend: str = "local"
    image: str = ""  # container image (docker backend; "" = its default)
    policy_file: str = ""
    workspace: str = ""
    gpu: bool = False
    resources: tuple[tuple[str, Any], ...] = ()
    policy_edits: bool = False

    def key(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)

    def policy(self) -> tuple[str | None, str | None]:
        """(text, source) of the kernel's policy: the file's, with the kernelspec's `resources` set (None:
        deny all). Validated: PolicyError or OSError (a missing file) say what is wrong."""
        from jupyter_openshell.policy import parse_policy

        text = Path(self.policy_file).read_text() if self.policy_file else None
        source = self.policy_file or None
        if self.resources:
            text = _with_resources(text or "", dict(self.resources))
            source = "kernelspec resources + " + (self.policy_file or "deny-all")
        if text is not None:
            parse_policy(text, source=source or "<kernel policy>")
        return text, source


def _with_resources(text: str, resources: dict[str, Any]) -> str:
    """`text` with `resources` merged into its `resources` section (comments kept)."""
    import io

    from ruamel.yaml import YAML

    yaml = YAML()
    doc = yaml.load(text) if text.strip() else None
    doc = doc if doc is not None else {}
    doc["resources"] = {**(doc.get("resources") or {}), **resources}
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def kernels_dir() -> Path:
    """Where this host keeps its kernels' homes (`services.state.kernel_homes`)."""
    from jupyter_openshell.services.state import kernel_homes

    return kernel_homes()


_live_lock = threading.Lock()
_live: dict[int, KernelSandbox] = {}  # id -> every kernel sandbox of this process not yet destroyed


def destroy_all() -> list[str]:
    """Destroy every kernel sandbox this process started and has not destroyed (at exit); their names."""
    with _live_lock:
        boxes = list(_live.values())
    for box in boxes:
        box.destroy()
    return [box.name for box in boxes]


atexit.register(destroy_all)


class KernelSandbox:
    """A sandbox plus the ipykernel process inside it."""

    def __init__(self, name: str, config: KernelConfig):
        self.name, self.config = name, config
        self.home = kernels_dir() / secrets.token_hex(12)  # short: the relay's ipc paths stay < 108 bytes
        self.key = secrets.token_hex(32).encode()
        self.process: Any = None
        self.broker: Any = None
        self.relay: Any = None
        self.backend: Any = None  # the sandbox's backend (services.sandboxes.backend)
        self.channel: Any = None  # the backend's KernelChannel
        self._created = False
        self._log: Any = None
        self.facts: dict[str, Any] = {}  # what the kernel's banner shows: backend, enforcement, gpu

    # -- lifecycle ---------------------------------------------------------------------------------

    @classmethod
    def start(cls, config: KernelConfig, name: str | None = None, timeout: float = 30.0) -> KernelSandbox:
        """Create the sandbox, launch the kernel and wait until it serves; clean up and raise on failure."""
        box = cls(name or f"kernel-{uuid.uuid4().hex[:12]}", config)
        try:
            box.create()
            box.launch()
            box.wait_ready(timeout)
        except BaseException:
            box.destroy()
            raise
        return box

    def create(self) -> None:
        from jupyter_openshell.policy import PolicyError
        from jupyter_openshell.services import sandboxes
        from jupyter_openshell.services.state import owner_mark, state_id

        from .broker import Broker
        from .relay import Relay

        self.home.mkdir(mode=0o700)
        # the host process this kernel belongs to (pid + start time): cleanup_stale() never touches a home
        # whose owner lives, however far its start has got
        (self.home / "owner").write_text(owner_mark())
        with _live_lock:
            _live[id(self)] = self
        try:
            text, source = self.config.policy()
        except (PolicyError, OSError) as exc:
            raise KernelStartError(f"OpenShell: the kernel's policy cannot be used:\n{exc}") from None
        (self.home / "sandbox").write_text(self.name)  # lets cleanup_stale() find the sandbox of a dead host
        (self.home / "state").write_text(state_id())  # ... of this state directory
        if self.config.policy_edits:  # read by the REST API (kernel_policy_edits); never seen in the sandbox
            (self.home / "policy-edits").touch(mode=0o600)
        try:
            self.backend = backend = sandboxes.backend(self.config.backend)
            spec = sandboxes.SandboxSpec(
                name=self.name,
                policy=text,
                policy_source=source,
                workspace=(self.config.workspace or None) if backend.host_paths else None,
                gpu=self.config.gpu or None,
                image=self.config.image or None,
                owner_pid=os.getpid(),
                kernel=True,
            )
            info = backend.create(spec)
            self._created = True
            self.facts = {"backend": info.backend, "enforcement": info.enforcement, "gpu": bool(info.gpu)}
            self.channel = backend.kernel_channel(self.name)
        except sandboxes.SandboxError as exc:
            what = "could not be created" if not self._created else "cannot run a kernel"
            raise KernelStartError(f"OpenShell: sandbox {self.name!r} {what}: {exc}") from None
        host_dir = self.channel.host_dir or self.home  # (no host socket reaches the sandbox: liveness only)
        self.broker = Broker(self.name, host_dir / "broker.sock", policy_edits=self.config.policy_edits)
        self.broker.start()
        (self.home / "broker").write_text(str(host_dir / "broker.sock"))  # what cleanup_stale() probes
        self.relay = Relay(self.channel.relay_base, self.home / "host", self.key,
                           kernel_ports=self.channel.relay_ports)
        self.relay.start()

    def connection_info(self, inside: bool = False) -> dict:
        """What clients connect to (the relay's); `inside`: the kernel's own sockets, as it sees them."""
        if not inside:
            return self.relay.connection_info()
        return {**self.channel.endpoint(), "key": self.key.decode(), "signature_scheme": "hmac-sha256",
                "kernel_name": "openshell"}

    def kernel_env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in ENV_ALLOW if k in os.environ}
        inside = self.channel.inside_dir
        env.update(
            {
                "OPENSHELL_SANDBOX": self.name,
                "OPENSHELL_KERNEL_BROKER": f"{inside}/broker.sock" if inside else NO_BROKER,
                "OPENSHELL_SANDBOX_FACTS": json.dumps(self.facts, default=str),
                "PYTHONUNBUFFERED": "1",
                "PYTHONSAFEPATH": "1",
            }
        )
        return env

    def launch(self) -> None:
        """Start ipykernel in the sandbox (again, on restart) with this sandbox's connection information."""
        extra_argv, extra_env = self.channel.launch(self.connection_info(inside=True))
        # The channel's runner (-I where the backend can; and PYTHONSAFEPATH, kernel_env) keeps the workspace,
        # the kernel's cwd, off sys.path while the kernel starts: a `jupyter_openshell/` there (code planted
        # by the sandbox) would shadow the real package and the kernel would start without its extension (no
        # %policy, no notices); inside.py puts the cwd on sys.path afterwards, for the user's own modules.
        argv = [
            *self.channel.runner,
            "jupyter_openshell.kernel.inside",
            *extra_argv,
            "--IPKernelApp.extra_extensions=jupyter_openshell",
            "--HistoryManager.enabled=False",
        ]
        env = {**self.kernel_env(), **self.channel.env, **extra_env}
        if self._log:
            self._log.close()
        fd = os.open(self.home / "kernel.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        self._log = os.fdopen(fd, "wb")  # lives as long as the kernel
        try:
            self.process = self.backend.exec(
                self.name, argv, env=env, cwd=None, stdin=subprocess.DEVNULL, stdout=self._log,
                stderr=self._log,
            )
        except Exception as exc:
            raise KernelStartError(
                f"OpenShell: could not start the kernel in sandbox {self.name!r}: {exc}"
            ) from None

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Return once the kernel has bound its sockets; raise with its log if it exits or times out."""
        from jupyter_openshell.services.sandboxes import SandboxError

        try:
            self.channel.wait_ready(self.process, timeout)
        except SandboxError as exc:
            raise KernelStartError(
                f"OpenShell: the kernel in sandbox {self.name!r} {exc}:\n{self.log_tail()}"
            ) from None

    def log_tail(self, limit: int = 4000) -> str:
        try:
            return (self.home / "kernel.log").read_bytes()[-limit:].decode(errors="replace")
        except OSError:
            return "(no kernel log)"

    # -- process control ---------------------------------------------------------------------------

    def poll(self) -> int | None:
        return self.process.poll() if self.process else 0

    def signal(self, signum: int) -> None:
        if self.process and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def reap(self, timeout: float = 5.0) -> int | None:
        if not self.process:
            return 0
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.process.wait(timeout)
        self.process = None
        return code

    def destroy(self) -> None:
        """Kill the kernel, remove the sandbox (its channel goes with it), stop the broker and the relay,
        delete the home."""
        if self.process:
            self.kill()
            with contextlib.suppress(Exception):
                self.reap()
        if self._created:
            try:
                self.backend.destroy(self.name)
            except Exception as exc:  # report, but keep cleaning
                print(f"OpenShell: could not destroy sandbox {self.name}: {exc}", file=sys.stderr)
            self._created = False
        if self.broker:
            self.broker.stop()
            self.broker = None
        if self.relay:
            self.relay.close()
            self.relay = None
        if self._log:
            self._log.close()
            self._log = None
        shutil.rmtree(self.home, ignore_errors=True)
        with _live_lock:
            _live.pop(id(self), None)


def kernel_policy_edits(name: str) -> bool | None:
    """None if sandbox `name` runs no kernel of this host; else whether its kernelspec enabled policy edits.

    Read from the kernel's home directory (host side, never bound into the sandbox) of this state directory.
    """
    from jupyter_openshell.services.state import state_id

    try:
        homes, ours = list(kernels_dir().iterdir()), state_id()
    except OSError:
        return None
    for home in homes:
        try:
            if (home / "sandbox").read_text().strip() == name and _state_of(home) == ours:
                return (home / "policy-edits").exists()
        except OSError:
            continue
    return None


def _state_of(home: Path) -> str:
    return os.path.realpath((home / "state").read_text())


def _owner_alive(home: Path) -> bool:
    """True while the host process that made this kernel home lives (pid and start time match); a home
    without an owner record (made by an older version) counts as owned while its broker answers."""
    import socket

    from jupyter_openshell.services.state import owner_alive

    try:
        return owner_alive((home / "owner").read_text())
    except (OSError, ValueError):
        with socket.socket(socket.AF_UNIX) as sock:
            try:
                sock.connect((home / "broker").read_text())
            except OSError:
                return False
        return True


def cleanup_stale() -> list[str]:
    """Destroy kernel sandboxes whose host process is gone (pid and start time); returns names.

    A server killed without shutting its kernels down leaves them running; the next server start and
    `openshell sandbox gc` call this. Only kernels of this state directory (as root the homes of every state
    directory share one directory): another one's sandbox would not be found here, and removing its home
    would leave it running where nothing finds it.
    """
    from jupyter_openshell.services import sandboxes
    from jupyter_openshell.services.state import state_id

    cleaned, ours = [], state_id()
    for home in kernels_dir().iterdir():
        try:
            name = (home / "sandbox").read_text().strip()
            state = _state_of(home)
        except OSError:
            continue  # (still being made, or not a kernel home)
        if state != ours or _owner_alive(home):
            continue
        with contextlib.suppress(Exception):
            sandboxes.destroy(name)
        shutil.rmtree(home, ignore_errors=True)
        cleaned.append(name)
    return cleaned
