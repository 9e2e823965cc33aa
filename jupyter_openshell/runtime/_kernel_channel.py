"""The kernel channel of backends that bind a host directory into the sandbox (local, docker): the kernel
binds ZMQ ipc sockets in a channel directory, seen inside at /tmp/.openshell-kernel; the host's relay
connects to them there, and the kernel's policy broker listens in the same directory.

`make(uid)` creates a channel directory (the backend calls it in `create` for `SandboxSpec(kernel=True)`,
records it and binds it read-write at `INSIDE_DIR`); `of(record, runner)` is what `Backend.kernel_channel`
returns, with the backend's command that runs the kernel's module; `remove(directory)` goes with the
sandbox. Not as root the channels live in `<state>/kernel-channels` (private); as root the sandbox runs as
another uid that must reach the directory, which the 0700 state directory forbids, so they live in a
root-owned 0711 directory whose entries have unguessable names, each handed to its sandbox's uid alone. It
must never hand a channel to another uid than its sandbox's, and never remove anything outside the channels
directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import paths
from ._types import Bind, ExecProcess, KernelChannel, SandboxError, SandboxSpec

INSIDE_DIR = "/tmp/.openshell-kernel"  # the sandbox's private /tmp: a mount point can be made there
PORTS = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}
SHARED_ROOT = "openshell-kernel-channels"  # (as root, in the system's temporary directory)


def channels_root() -> Path:
    """Where channel directories live (made on first use; see the module's docstring)."""
    if os.geteuid() != 0:
        return paths.ensure_private_dir(paths.layout().kernel_channels_dir)
    try:
        return paths.shared_root_dir(SHARED_ROOT)
    except OSError as exc:
        raise SandboxError(str(exc)) from None


def make(uid: int | None) -> Path:
    """A fresh channel directory (0700) for a sandbox whose processes run as host `uid` (as root: its owner).
    Short names: ipc socket paths must stay below 108 bytes."""
    directory = channels_root() / secrets.token_hex(12)
    directory.mkdir(mode=0o700)
    if os.geteuid() == 0 and uid:
        os.chown(directory, uid, uid)
    return directory


def binds(spec: SandboxSpec, record: dict, uid: int | None) -> list[Bind]:
    """The spec's binds, plus (for `spec.kernel`) a fresh channel bound read-write at INSIDE_DIR, recorded in
    `record["kernel_channel"]` (so that a failed create's teardown removes it)."""
    if not spec.kernel:
        return list(spec.binds)
    record["kernel_channel"] = str(make(uid))
    return [*spec.binds, Bind(record["kernel_channel"], INSIDE_DIR, writable=True)]


def of(record: dict, runner: Sequence[str]) -> IpcKernelChannel:
    """The channel of the sandbox `record` (SandboxError if it was created without one)."""
    if not record.get("kernel_channel"):
        raise SandboxError(
            f"sandbox {record.get('name')} was created without a kernel channel (SandboxSpec(kernel=True))"
        )
    return IpcKernelChannel(record["kernel_channel"], record.get("uid"), runner)


def remove(directory: str | Path | None) -> None:
    """Remove a channel directory made by `make` (anything else is left alone)."""
    if not directory:
        return
    path = Path(directory)
    if path.parent == channels_root() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)


class IpcKernelChannel(KernelChannel):
    """ipc sockets in a channel directory bound into the sandbox (`make`)."""

    def __init__(
        self,
        directory: str | Path,
        uid: int | None,
        runner: Sequence[str],
        env: Mapping[str, str] | None = None,
    ):
        self.directory = Path(directory)
        self.uid = uid if os.geteuid() == 0 else None  # (the host writes files the kernel must read)
        self.runner = tuple(runner)
        self.env = dict(env or {})
        self.relay_base = str(self.directory / "k")
        self.relay_ports = None
        self.host_dir = self.directory
        self.inside_dir = INSIDE_DIR

    def endpoint(self) -> dict[str, Any]:
        return {**PORTS, "ip": f"{INSIDE_DIR}/k", "transport": "ipc"}

    def launch(self, connection: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
        # The sandbox may write this directory (and ran code in it before a restart): never follow a link it
        # put here, and hand over the file by its descriptor, not by a name it could swap meanwhile.
        path = self.directory / "connection.json"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as fh:
            if self.uid is not None:
                os.fchown(fh.fileno(), self.uid, self.uid)
            fh.write(json.dumps(connection))
        for port in PORTS.values():  # (a restart: the old kernel's sockets must not read as ready)
            with contextlib.suppress(FileNotFoundError):
                (self.directory / f"k-{port}").unlink()
        return ["-f", f"{INSIDE_DIR}/connection.json"], {}

    def wait_ready(self, process: ExecProcess, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all((self.directory / f"k-{p}").exists() for p in PORTS.values()):
                return
            if process.poll() is not None:
                raise SandboxError(f"exited with code {process.returncode} while starting")
            time.sleep(0.01)
        raise SandboxError(f"did not start within {timeout:.0f} s")
