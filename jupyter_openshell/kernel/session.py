"""One sandbox running one ipykernel, connected over ZMQ ipc sockets in a directory bound into it, or
over TCP to its pod on a backend whose sandboxes have an address of their own (Kubernetes: the
backend's `kernel_endpoint(name)`).

The sandbox's network namespace has only lo, so TCP from the host cannot reach the kernel: the kernel binds
ipc sockets in a channel directory (see `kernels_dir`), seen in the sandbox at /tmp/.openshell-kernel.
Each kernel gets a fresh HMAC key; the connection file inside holds only that key. Clients never connect
to those sockets: `connection_info()` is the kernel's `relay.Relay` (a host-only directory, another key),
which filters what the kernel sends. On TCP, the kernel's connection file travels in the exec request's
environment (OPENSHELL_KERNEL_CONNECTION, never a command-line argument) and, once the kernel has bound
its ports in the pod, its connection information comes back to the server on the exec stream (the
response-address pattern: $OPENSHELL_RESPONSE_FD, see runtime.kubernetes._exec), so the pod needs no
route to the server. It must never pass the host's environment (Jupyter token, other kernels' secrets)
into the sandbox, and `destroy()` must leave nothing behind. Kernel sandboxes belong to the process that
started them: recorded as the sandbox's owner (`openshell sandbox gc` removes them once it is gone, e.g.
killed), and destroyed when it exits (atexit: a Jupyter server stopped by Ctrl-C without a terminal ends
by KeyboardInterrupt, without shutting its kernels down).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from tornado.web import HTTPError

INSIDE_DIR = "/tmp/.openshell-kernel"  # the sandbox's private /tmp: a mount point can be made there
PORTS = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}
# TCP backends (Kubernetes): the kernel's ports in its pod (what the sandboxes' NetworkPolicy admits from
# the Jupyter server), and where the package is in the image (the Docker backend's runtime layer)
TCP_PORTS = {"shell": 50001, "iopub": 50002, "stdin": 50003, "control": 50004, "hb": 50005}
TCP_PYTHONPATH = "/opt/openshell/lib"
# Host variables a kernel may inherit; everything else (JUPYTER_TOKEN, JPY_*, cloud keys ...) stays out.
ENV_ALLOW = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM")


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


def kernels_dir() -> Path:
    """Where kernel channel directories live.

    Not as root: <state>/kernels (private). As root the runtime runs bwrap as an unprivileged uid that
    must reach the directory it binds, which the 0700 state directory forbids; then a root-owned 0711
    directory is used whose entries have unguessable names, each handed to its sandbox's uid alone.
    """
    from jupyter_openshell.paths import sub

    if os.geteuid() != 0:
        return sub("kernels")
    base = Path(tempfile.gettempdir()) / "openshell-kernels"
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o711)
    st = base.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0:
        raise KernelStartError(f"{base} is not a directory owned by root; remove it and retry")
    base.chmod(0o711)
    return base


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


def _state_dir() -> Path:
    from jupyter_openshell.paths import state_dir

    return state_dir()


@functools.cache
def _backend(name: str) -> Any:
    from jupyter_openshell.runtime import get_backend

    return get_backend(name)


class KernelSandbox:
    """A sandbox plus the ipykernel process inside it."""

    def __init__(self, name: str, config: KernelConfig):
        self.name, self.config = name, config
        self.home = kernels_dir() / secrets.token_hex(12)  # short: ipc paths must stay < 108 bytes
        self.chan = self.home / "chan"
        self.key = secrets.token_hex(32).encode()
        self.process: Any = None
        self.broker: Any = None
        self.relay: Any = None
        self.uid: int | None = None
        self.python = sys.executable  # the kernel's interpreter inside (the backend may name another)
        self._created = False
        self._log: Any = None
        self.facts: dict[str, Any] = {}  # what the kernel's banner shows: backend, enforcement, gpu
        self.address: str | None = None  # TCP backends: the sandbox's own address (its pod IP)

    @property
    def tcp(self) -> bool:
        """True on a backend whose sandboxes have a network address of their own (Kubernetes)."""
        return hasattr(_backend(self.config.backend), "kernel_endpoint")

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
        from jupyter_openshell.policy import PolicyError, load_policy_file
        from jupyter_openshell.runtime import Bind, SandboxError, SandboxSpec

        from .broker import Broker
        from .relay import Relay

        self.home.mkdir(mode=0o711)
        # the host process this kernel belongs to (pid + start time): cleanup_stale() never touches a home
        # whose owner lives, however far its start has got
        from jupyter_openshell.runtime._state import start_time

        (self.home / "owner").write_text(f"{os.getpid()} {start_time(os.getpid())}")
        with _live_lock:
            _live[id(self)] = self
        policy_file = self.config.policy_file or None
        try:
            if self.config.policy_file:
                load_policy_file(self.config.policy_file)
            if self.config.resources:
                policy_file = self._policy_with_resources()
        except (PolicyError, OSError) as exc:
            raise KernelStartError(f"OpenShell: the kernel's policy cannot be used:\n{exc}") from None
        self.chan.mkdir(mode=0o700)
        self.broker = Broker(self.name, self.chan / "broker.sock", policy_edits=self.config.policy_edits)
        self.broker.start()
        if not self.tcp:
            self.relay = Relay(str(self.chan / "k"), self.home / "host", self.key)
            self.relay.start()
        (self.home / "sandbox").write_text(self.name)  # lets cleanup_stale() find the sandbox of a dead host
        (self.home / "state").write_text(str(_state_dir()))  # ... of this state directory (as root the
        # kernels directory is shared by every state directory)
        if self.config.policy_edits:  # read by the REST API (kernel_policy_edits); never seen in the sandbox
            (self.home / "policy-edits").touch(mode=0o600)
        spec = SandboxSpec(
            name=self.name,
            policy_file=policy_file,
            workspace=None if self.tcp else self.config.workspace or None,
            gpu=self.config.gpu or None,
            binds=[] if self.tcp else [Bind(str(self.chan), INSIDE_DIR, writable=True)],
            env={},
            image=self.config.image or None,
            owner_pid=os.getpid(),
        )
        try:
            info = _backend(self.config.backend).create(spec)
        except SandboxError as exc:
            raise KernelStartError(f"OpenShell: sandbox {self.name!r} could not be created: {exc}") from None
        self._created = True
        self.facts = {"backend": info.backend, "enforcement": info.enforcement, "gpu": bool(info.gpu)}
        if info.details.get("kernel_missing"):  # an image without ipykernel
            raise KernelStartError(f"OpenShell: {info.details['kernel_missing']}")
        self.python = info.details.get("python") or sys.executable
        if self.tcp:  # the relay connects to the kernel's ports in the pod
            self.python = "python3"
            self.address = _backend(self.config.backend).kernel_endpoint(self.name)
            self.relay = Relay(f"tcp://{self.address}", self.home / "host", self.key, kernel_ports=TCP_PORTS)
            self.relay.start()
        elif os.geteuid() == 0 and info.uid:  # the kernel (sandbox uid) binds its sockets here; nobody else
            self.uid = info.uid
            os.chown(self.chan, info.uid, info.uid)

    def _policy_with_resources(self) -> str:
        """The kernel's policy with the kernelspec's `resources` set (validated); the runtime copies it."""
        import io

        from ruamel.yaml import YAML

        from jupyter_openshell.policy import parse_policy

        text = Path(self.config.policy_file).read_text() if self.config.policy_file else ""
        yaml = YAML()
        doc = yaml.load(text) if text.strip() else None
        doc = doc if doc is not None else {}
        doc["resources"] = {**(doc.get("resources") or {}), **dict(self.config.resources)}
        out = io.StringIO()
        yaml.dump(doc, out)
        parse_policy(
            out.getvalue(), source="kernelspec resources + " + (self.config.policy_file or "deny-all")
        )
        path = self.home / "policy.yaml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(out.getvalue())
        return str(path)

    def connection_info(self, inside: bool = False) -> dict:
        """What clients connect to (the relay's); `inside`: the kernel's own sockets, in the sandbox."""
        if not inside:
            return self.relay.connection_info()
        if self.tcp:
            return {**{name: TCP_PORTS[name.removesuffix("_port")] for name in PORTS}, "ip": self.address,
                    "transport": "tcp", "key": self.key.decode(), "signature_scheme": "hmac-sha256",
                    "kernel_name": "openshell"}
        return {
            **PORTS,
            "ip": f"{INSIDE_DIR}/k",
            "transport": "ipc",
            "key": self.key.decode(),
            "signature_scheme": "hmac-sha256",
            "kernel_name": "openshell",
        }

    def kernel_env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in ENV_ALLOW if k in os.environ}
        env.update(
            {
                "OPENSHELL_SANDBOX": self.name,
                "OPENSHELL_KERNEL_BROKER": f"{INSIDE_DIR}/broker.sock",
                "OPENSHELL_SANDBOX_FACTS": json.dumps(self.facts, default=str),
                "PYTHONUNBUFFERED": "1",
                "PYTHONSAFEPATH": "1",
            }
        )
        return env

    def launch(self) -> None:
        """Start ipykernel in the sandbox (again, on restart) with this sandbox's connection file."""
        if self.tcp:
            self._launch_tcp()
            return
        conn = self.chan / "connection.json"
        fd = os.open(conn, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(self.connection_info(inside=True)))
        if self.uid is not None:
            os.chown(conn, self.uid, self.uid)
        for port in PORTS.values():
            with contextlib.suppress(FileNotFoundError):
                (self.chan / f"k-{port}").unlink()
        # PYTHONSAFEPATH (kernel_env) and -s: the workspace (the kernel's cwd) is not on sys.path while the
        # kernel starts: a `jupyter_openshell/` there (code planted by the sandbox) would shadow the real
        # package and the kernel would start without its extension (no %policy, no notices); inside.py
        # puts the cwd on sys.path afterwards, for the user's own modules. (Not -I: a container image's
        # Python finds this package through the PYTHONPATH its backend sets.)
        argv = [
            self.python,
            "-s",
            "-m",
            "jupyter_openshell.kernel.inside",
            "-f",
            f"{INSIDE_DIR}/connection.json",
            "--IPKernelApp.extra_extensions=jupyter_openshell",
            "--HistoryManager.enabled=False",
        ]
        if self._log:
            self._log.close()
        fd = os.open(self.home / "kernel.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        self._log = os.fdopen(fd, "wb")  # lives as long as the kernel
        try:
            self.process = _backend(self.config.backend).exec(
                self.name,
                argv,
                env=self.kernel_env(),
                cwd=None,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=self._log,
            )
        except Exception as exc:
            raise KernelStartError(
                f"OpenShell: could not start the kernel in sandbox {self.name!r}: {exc}"
            ) from None

    def _launch_tcp(self) -> None:
        from jupyter_openshell.runtime.kubernetes._exec import RESPONSE_ENV

        connection = json.dumps(self.connection_info(inside=True))
        env = {**self.kernel_env(), "OPENSHELL_KERNEL_CONNECTION": connection, RESPONSE_ENV: "",
               "PYTHONPATH": TCP_PYTHONPATH}
        self._open_log()
        argv = [self.python, "-m", "jupyter_openshell.kernel.inside",
                "--IPKernelApp.extra_extensions=jupyter_openshell", "--HistoryManager.enabled=False"]
        try:
            self.process = _backend(self.config.backend).exec(
                self.name, argv, env=env, cwd=None, stdin=subprocess.DEVNULL, stdout=self._log,
                stderr=self._log,
            )
        except Exception as exc:
            raise KernelStartError(
                f"OpenShell: could not start the kernel in sandbox {self.name!r}: {exc}"
            ) from None

    def _open_log(self) -> None:
        if self._log:
            self._log.close()
        fd = os.open(self.home / "kernel.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        self._log = os.fdopen(fd, "wb")  # lives as long as the kernel

    def _wait_response(self, timeout: float) -> None:
        """TCP: the kernel's connection information, sent back on the exec stream once it has bound."""
        answer = self.process.response(timeout)
        if answer is not None:
            try:
                bound = json.loads(answer)
            except ValueError:
                bound = None
            expected = self.connection_info(inside=True)
            if isinstance(bound, dict) and all(bound.get(k) == expected[k] for k in PORTS):
                return
            raise KernelStartError(f"OpenShell: the kernel in sandbox {self.name!r} answered an unexpected "
                                   f"connection ({answer[:200]!r})")
        if self.process.poll() is not None:
            raise KernelStartError(f"OpenShell: the kernel in sandbox {self.name!r} exited with code "
                                   f"{self.process.returncode} while starting:\n{self.log_tail()}")
        raise KernelStartError(f"OpenShell: the kernel in sandbox {self.name!r} did not start within "
                               f"{timeout:.0f} s:\n{self.log_tail()}")

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Return once the kernel has bound its sockets; raise with its log if it exits or times out."""
        if self.tcp:
            self._wait_response(timeout)
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all((self.chan / f"k-{p}").exists() for p in PORTS.values()):
                return
            if self.process.poll() is not None:
                raise KernelStartError(
                    f"OpenShell: the kernel in sandbox {self.name!r} exited with code "
                    f"{self.process.returncode} while starting:\n{self.log_tail()}"
                )
            time.sleep(0.01)
        raise KernelStartError(
            f"OpenShell: the kernel in sandbox {self.name!r} did not start within {timeout:.0f} s:\n"
            f"{self.log_tail()}"
        )

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
        """Kill the kernel, remove the sandbox, stop the broker, delete the sockets and files."""
        if self.process:
            self.kill()
            with contextlib.suppress(Exception):
                self.reap()
        if self._created:
            try:
                _backend(self.config.backend).destroy(self.name)
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

    Read from the kernel's home directory (host side, never bound into the sandbox: its channel is).
    """
    try:
        homes = list(kernels_dir().iterdir())
    except OSError:
        return None
    for home in homes:
        try:
            if (home / "sandbox").read_text().strip() == name:
                return (home / "policy-edits").exists()
        except OSError:
            continue
    return None


def _owner_alive(home: Path) -> bool:
    """True while the host process that made this kernel home lives (pid and start time match); a home
    without an owner record (made by an older version) counts as owned while its broker answers."""
    from jupyter_openshell.runtime._state import alive

    try:
        pid, started = (home / "owner").read_text().split()
        return alive(int(pid), int(started))
    except (OSError, ValueError):
        import socket

        with socket.socket(socket.AF_UNIX) as sock:
            try:
                sock.connect(str(home / "chan" / "broker.sock"))
            except OSError:
                return False
        return True


def cleanup_stale() -> list[str]:
    """Destroy kernel sandboxes whose host process is gone (pid and start time); returns names.

    A server killed without shutting its kernels down leaves them running; the next server start and
    `openshell sandbox gc` call this. Only kernels of this state directory: another one's sandbox would not
    be found here, and removing its channel would leave it running where nothing finds it.
    """
    cleaned, ours = [], str(_state_dir())
    for home in kernels_dir().iterdir():
        try:
            name = (home / "sandbox").read_text().strip()
            state = (home / "state").read_text()
        except OSError:
            continue  # (still being made, or not a kernel home)
        if state != ours or _owner_alive(home):
            continue
        with contextlib.suppress(Exception):
            from jupyter_openshell.runtime import backend_of

            backend_of(name).destroy(name)
        shutil.rmtree(home, ignore_errors=True)
        cleaned.append(name)
    return cleaned
