"""The local backend: sandboxes on this Linux machine with bubblewrap, seccomp, Landlock and cgroups.

Process tree of one sandbox (host view):
  timeout (the "shim", own session, in the sandbox's cgroups, uid = sandbox uid when we are root)
    bwrap (unprivileged, --die-with-parent)  ->  [PID ns] bwrap reaper (1)  ->  agent (2)  ->  commands
Killing the shim's process group takes the whole PID namespace down (die-with-parent on every level);
the cgroups (when available) catch anything else. Exec talks to the agent over
`<state>/sandboxes/<name>/control.sock`, a listening socket the host creates and hands to the agent,
outside the directory the sandbox can see. This module puts a sandbox together and takes it apart; the
pieces have their own modules: `_host` (tools, the agent's Python, reachability), `_agent_env` (what every
agent is told; the policy checks), `_agent_boot` (the agent's code in a memfd), `_shims` (spawn, readiness,
end, orphans), `_workspace` (uid, disk, protected entries), `_bwrap`, `_seccomp`, `_resources`,
`_kernel_channel`, `_links` (policy store and proxy). It must never run bwrap as host root, and never leave
a sandbox half created: any failure in `create` tears down what was started.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import paths
from . import (
    _agent_boot,
    _agent_env,
    _attach,
    _bwrap,
    _disk,
    _gpu,
    _host,
    _kernel_channel,
    _landlock,
    _links,
    _resources,
    _seccomp,
    _shims,
    _state,
    _workspace,
)
from ._exec import RemoteProcess
from ._types import Backend, KernelChannel, SandboxError, SandboxInfo, SandboxSpec, check_name

READY_TIMEOUT = 20.0


class LocalBackend(Backend):
    name = "local"

    # --- create -------------------------------------------------------------------------------
    def create(self, spec: SandboxSpec) -> SandboxInfo:
        name = check_name(spec.name or f"sb-{secrets.token_hex(4)}")
        if spec.image:
            raise SandboxError(
                f"the local backend runs this machine's own system, not an image ({spec.image}); "
                "use --backend docker for images, or leave out --image"
            )
        bwrap, timeout = _host.which("bwrap", "bubblewrap"), _host.which("timeout", "coreutils")
        text, policy = _links.policy_of(spec)
        with _state.locked():
            existing = _state.read(name)
            if existing is not None and existing.get("backend", self.name) != self.name:
                raise SandboxError(
                    f"sandbox {name} exists on the {existing['backend']} backend; pick another --name "
                    f"or remove it with `openshell sandbox rm {name}`"
                )
            if existing is not None:
                if self._alive(existing):
                    raise SandboxError(
                        f"sandbox {name} already exists and is running; pick another --name "
                        f"or remove it with `openshell sandbox rm {name}`"
                    )
                self._teardown(name, existing, remove=True)
            directory = paths.ensure_private_dir(_state.directory(name))
            slot = _state.allocate_slot()
            record = {
                "name": name,
                "slot": slot,
                "address": _state.address(slot),
                "backend": self.name,
                "state": "creating",
                "created": _state.now(),
                "policy_file": str(_links.policy_path(name)),
                "creator": [os.getpid(), _state.start_time(os.getpid())],
            }
            if spec.owner_pid:
                record["owner"] = {"pid": spec.owner_pid, "start": _state.start_time(spec.owner_pid)}
            _state.write(record)
        try:
            return self._start(name, directory, record, spec, policy, text, bwrap, timeout)
        except BaseException:
            self._teardown(name, record, remove=True)  # (the in-memory record is the newest)
            raise

    def _start(
        self,
        name: str,
        directory: Path,
        record: dict,
        spec: SandboxSpec,
        policy: Any,
        text: str,
        bwrap: str,
        timeout: str,
    ) -> SandboxInfo:
        user, inner_uid = _agent_env.sandbox_user(policy)
        _agent_env.check_policy_paths(policy)
        limits = _links.limits(policy)
        gpu = policy.gpu if spec.gpu is None else spec.gpu
        gpu_binds = _gpu.gpu_binds() if gpu else None
        python, runtime_paths = _host.runtime_paths()
        token = secrets.token_hex(8)
        exposed, reserved = _workspace.exposed_dir(directory, token)
        record["exposed"] = str(exposed)
        workspace, own_ws, created = _workspace.choose(spec.workspace, exposed)
        record.update(workspace=str(workspace), workspace_owned=own_ws)
        disk = _workspace.attach_disk(record, workspace, own_ws, limits.disk, exposed)
        uid = _workspace.host_uid(reserved, workspace, created, exposed)
        binds = _kernel_channel.binds(spec, record, uid)
        chan = exposed / "chan"
        chan.mkdir(exist_ok=True)
        chan.chmod(0o711)
        if exposed != directory:  # the proxy's gateway puts proxy.sock in <state>/sandboxes/<name>/chan
            link = paths.layout().sandbox_channel(name)
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            link.symlink_to(chan)
        # While the rest is set up and the sandbox boots: its policy becomes current, then the proxy
        # opens its gateway (both wait on I/O: fsync, the proxy's workers).
        publish = _links.in_background(_links.publish, name, policy, record["created"])
        cmd = _bwrap.Command()
        try:
            if os.geteuid() == 0:
                _host.check_reachable([python, os.path.realpath(python), *runtime_paths], uid, python=True)
                # (the leaf's ACL lets uid in: check its parents)
                acl = (exposed / _workspace.WORKSPACE_ACL).exists()
                reached = [str(workspace.parent if acl else workspace), str(chan)]
                _host.check_reachable(reached, uid, python=False)
            enforcement = _resources.plan(name, limits, token)
            protected = _workspace.protect(record, workspace, disk, policy)
            protect_fds = [(rel, int(cmd.fd(fd)), rw) for rel, fd, rw in protected]
            record.update(
                workspace=str(workspace),
                workspace_owned=own_ws,
                uid=uid,
                inner_uid=inner_uid,
                user=user,
                limits=limits.to_dict(),
                enforcement=enforcement.to_dict(),
                landlock=_landlock.abi(),
                gpu=bool(gpu),
                tmp_size=limits.disk or _agent_env.DEFAULT_TMP,
                token=token,
                control=str(paths.layout().control_socket(name)),
                log=str(paths.layout().sandbox_log(name)),
            )  # (written once the shim runs; a failure before that tears down from this dict)

            control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            ctl_path = paths.layout().control_socket(name)
            with contextlib.suppress(FileNotFoundError):
                ctl_path.unlink()
            control.bind(str(ctl_path))
            ctl_path.chmod(0o600)
            control.listen(64)

            ca_pem = _links.ca_bundle()
            if not ca_pem:  # first sandbox of this state dir: the proxy makes the CA
                _links.ensure_proxy()
                ca_pem = _links.ca_bundle()
            ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
            info_r, info_w = os.pipe2(os.O_CLOEXEC)
            go_r, go_w = os.pipe2(os.O_CLOEXEC)  # host -> agent: every process is in the cgroups
            ready_arg, info_arg = cmd.fd(ready_w), cmd.fd(info_w)  # closed here by cmd.close()
            try:
                ro = [*runtime_paths, *policy.filesystem.read_only, *(t for _, t in gpu_binds or [])]
                rw = list(policy.filesystem.read_write) + [b.target for b in binds if b.writable]
                ro += [b.target for b in binds if not b.writable]
                cmd.add(*_disk.shim_prefix(disk), bwrap, "--info-fd", info_arg)
                cmd.add("--seccomp", cmd.fd(_seccomp.filter_fd()))
                _bwrap.build(
                    cmd,
                    name=name,
                    user=user,
                    uid=inner_uid,
                    chan=str(chan),
                    workspace=str(workspace),
                    ca_pem=ca_pem,
                    tmp_size=record["tmp_size"],
                    read_only=list(policy.filesystem.read_only),
                    read_write=list(policy.filesystem.read_write),
                    hidden=list(policy.filesystem.hidden),
                    runtime_paths=runtime_paths,
                    state_dir=str(paths.state_dir()),
                    gpu=gpu_binds,
                    binds=[(b.source, b.target, b.writable) for b in binds],
                    protect=protect_fds,
                )
                config = self._agent_config(
                    name,
                    record,
                    spec,
                    enforcement,
                    ro,
                    rw,
                    cmd.fd(os.dup(control.fileno())),
                    ready_arg,
                    cmd.fd(go_r),
                    bool(ca_pem),
                )
                boot = cmd.fd(_agent_boot.agent_fd(config))
                cmd.add(python, "-I", "-S", "-B", "-c", _agent_boot.AGENT_BOOT, boot)
                setpriv = _host.which("setpriv", "util-linux") if os.geteuid() == 0 else None
                shim = _shims.spawn(cmd, timeout, setpriv, limits, name, uid)
                record.update(pid=shim.pid, pid_start=_state.start_time(shim.pid), state="starting")
                _shims.register(shim)
                # Into its cgroups while bwrap starts: the first move waits for an RCU grace period
                # (~10 ms), which thus overlaps the start-up instead of preceding it. What bwrap forks
                # meanwhile is moved by the second call, once the tree is still (see `adopt`).
                enforcement.adopt(shim.pid)
            except BaseException:
                for fd in (ready_r, info_r, go_w):
                    os.close(fd)
                raise
            finally:
                cmd.close()
                control.close()
            _state.write(record)
            try:
                ok = _shims.read_ready(ready_r, shim, time.monotonic() + READY_TIMEOUT)
                info = _shims.read_info(info_r)
                if not ok:
                    raise SandboxError(f"sandbox {name} did not start:\n{self._log_tail(record)}")
                # Ready: bwrap forks nothing more and the agent waits for "go" before it serves any
                # request, so this catches every process started before its parent was moved, and no
                # command (not even a request queued meanwhile) runs outside the cgroups.
                enforcement.adopt(shim.pid)
                try:
                    os.write(go_w, b"go\n")
                except BrokenPipeError:  # the agent died in between
                    raise SandboxError(f"sandbox {name} did not start:\n{self._log_tail(record)}") from None
            finally:
                for fd in (ready_r, info_r, go_w):  # (closing "go" unsent: the agent exits)
                    os.close(fd)
            warning = publish()
            record["warnings"] = [*([warning] if warning else []), *record["protect"].get("warnings", [])]
            child = info.get("child-pid")
            record.update(
                child_pid=child, child_start=_state.start_time(child) if child else None, state="running"
            )
        except BaseException:
            cmd.close()
            with contextlib.suppress(BaseException):
                publish()  # (before the teardown unregisters it)
            raise
        _state.write(record)
        return self._info(record)

    def _agent_config(
        self,
        name: str,
        record: dict,
        spec: SandboxSpec,
        enforcement: Any,
        ro: list[str],
        rw: list[str],
        control_fd: str,
        ready_fd: str,
        go_fd: str,
        ca: bool,
    ) -> dict:
        env = {
            "PATH": f"{os.path.dirname(sys.executable)}:{_agent_env.SYSTEM_PATH}",
            "_agent_env.HOME": _agent_env.HOME,
            "USER": record["user"],
            "LOGNAME": record["user"],
            "SHELL": "/bin/sh",
            "LANG": "C.UTF-8",
            "TMPDIR": "/tmp",
            "OPENSHELL_SANDBOX": name,
            "NO_PROXY": "localhost,127.0.0.1,::1",
            "no_proxy": "localhost,127.0.0.1,::1",
            # a denial is final: pip's five retries would only repeat it (and its notice); a spec's env wins
            "PIP_RETRIES": "0",
        }
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            env[var] = env[var.lower()] = _agent_env.PROXY_URL
        if ca:
            env.update(dict.fromkeys(_agent_env.CA_VARS, _bwrap.CA_PATH))
        env.update(spec.env)
        system_ro = [p for p in _bwrap.SYSTEM_DIRS if os.path.exists(p)]
        return {
            "name": name,
            "control_fd": int(control_fd),
            "ready_fd": int(ready_fd),
            "go_fd": int(go_fd),
            "proxy_sock": f"{_bwrap.CHAN_PATH}/proxy.sock",
            "listen": ["127.0.0.1", _agent_env.PROXY_PORT],
            "relay_max": _agent_env.relay_max(),
            "env": env,
            "workdir": _bwrap.WORKSPACE,
            "rlimits": enforcement.rlimits,
            "landlock": {
                "ro": [*system_ro, "/etc", "/proc", _bwrap.CHAN_PATH, *ro],
                "rw": [_bwrap.WORKSPACE, "/tmp", "/dev", *rw],
                "list": ["/"],
            },
        }

    # --- exec ---------------------------------------------------------------------------------
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
    ) -> RemoteProcess:
        return _attach.exec_local(name, argv, env=env, cwd=cwd, stdin=stdin, stdout=stdout, stderr=stderr)

    def kernel_channel(self, name: str) -> KernelChannel:
        """ipc sockets in the channel bound at /tmp/.openshell-kernel; the kernel runs on this venv's Python
        (-I: the workspace, its cwd, is not on sys.path while it starts)."""
        return _kernel_channel.of(self._record(name), (sys.executable, "-I", "-m"))

    # --- lifecycle ----------------------------------------------------------------------------
    def _record(self, name: str) -> dict:
        return _attach.record(name)

    @staticmethod
    def _alive(record: dict) -> bool:
        return _state.alive(record.get("pid"), record.get("pid_start"))

    def _teardown(self, name: str, record: dict, remove: bool) -> None:
        # (the proxy's round trip, meanwhile; only this sandbox, not a newer one of the same name)
        unregister = _links.in_background(_links.unregister, name, record.get("created"))
        try:
            _shims.end(record)
        finally:
            unregister()
        _workspace.release(name, record, remove)
        directory = _state.directory(name)
        with contextlib.suppress(FileNotFoundError):
            paths.layout().control_socket(name).unlink()
        if not remove:
            return
        _kernel_channel.remove(record.get("kernel_channel"))
        _workspace.remove_exposed(record.get("exposed"))
        _workspace.rmtree(directory)  # a workspace given with --workspace is never inside it: kept

    def stop(self, name: str) -> SandboxInfo:
        record = self._record(name)
        self._teardown(name, record, remove=False)
        record["state"] = "stopped"
        _state.write(record)
        return self._info(record)

    def destroy(self, name: str) -> None:
        self._teardown(name, self._record(name), remove=True)

    def status(self, name: str) -> SandboxInfo:
        return self._info(self._record(name))

    def list(self) -> list[SandboxInfo]:
        out = []
        for name in _state.names():
            record = _state.read(name)
            if record is not None and record.get("backend", self.name) == self.name:
                out.append(self._info(record))
        return out

    def cleanup(self) -> list[str]:
        cleaned = []
        for info in self.list():
            if info.state == "exited" or info.details.get("owner", {}).get("alive") is False:
                self._teardown(info.name, _state.read(info.name) or {"name": info.name}, remove=True)
                cleaned.append(info.name)
        root = str(_state.root())
        for pid, directory in _shims.orphans(root):
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            name = os.path.basename(directory)
            _links.unregister(name)  # closes its channel in the proxy
            chan = paths.layout().sandbox_channel(name)
            if chan.is_symlink():  # root: the exposed dir is named <uid>-<token>, cgroups <name>-<token>
                exposed = Path(os.readlink(chan)).parent
                enforcement = _resources.find(name, exposed.name.split("-", 1)[-1])
                enforcement.kill()
                enforcement.remove()
                _workspace.remove_exposed(exposed)  # (the record, and with it the plan, is lost)
            _workspace.rmtree(Path(directory))
            cleaned.append(f"pid {pid}")
        return cleaned

    def _info(self, record: dict) -> SandboxInfo:
        _shims.reap()
        state = record.get("state", "exited")
        if state in ("running", "starting", "creating") and not _workspace.in_use(record):
            state = "exited"  # (a create whose process died midway included)
        enforcement = record.get("enforcement") or {}
        return SandboxInfo(
            name=record["name"],
            state=state,
            backend=self.name,
            address=record.get("address", ""),
            workspace=record.get("workspace", ""),
            policy_file=record.get("policy_file", ""),
            created=record.get("created", 0.0),
            enforcement=layers(record),
            limits=record.get("limits", {}),
            gpu=record.get("gpu", False),
            details={
                "pid": record.get("pid"),
                "uid": record.get("uid"),
                "owner": _owner(record),
                "warnings": record.get("warnings", []),
                "rlimits": enforcement.get("rlimits", {}),
                "tmp_size": record.get("tmp_size") or _agent_env.DEFAULT_TMP,
                "resources": _resources.describe(
                    enforcement.get("kind", ""),
                    record.get("limits", {}),
                    enforcement.get("rlimits", {}),
                    record.get("tmp_size") or _agent_env.DEFAULT_TMP,
                    _disk.Disk.from_dict(record.get("disk")),
                    state,
                ),
                "protected": _workspace.details(record),
            },
        )

    # --- policy and logs ----------------------------------------------------------------------
    def set_policy(self, name: str, text: str) -> Any:
        self._record(name)
        return _links.store(name, text)

    def get_policy(self, name: str) -> str:
        record = self._record(name)
        try:
            return Path(record.get("policy_file") or _links.policy_path(name)).read_text()
        except OSError as exc:
            raise SandboxError(f"sandbox {name} has no policy file: {exc.strerror}") from exc

    def logs(self, name: str) -> str:
        record = self._record(name)
        try:
            return Path(record.get("log") or paths.layout().sandbox_log(name)).read_text(
                errors="replace"
            )
        except FileNotFoundError:
            return ""

    def _log_tail(self, record: dict, lines: int = 20) -> str:
        text = self.logs(record["name"]) if _state.read(record["name"]) else ""
        return "\n".join(text.splitlines()[-lines:]) or "(no log output)"


def layers(record: dict) -> dict[str, str]:
    """Each wall of a local sandbox and what makes it (`SandboxInfo.enforcement`)."""
    landlock = record.get("landlock")
    return {
        "network": "network namespace with lo only; out only through the proxy channel (/run/openshell)",
        "filesystem": "bubblewrap mount namespace (allowlist, read-only system), "
        + (f"Landlock ABI {landlock}" if landlock else "Landlock unavailable (this kernel lacks it)"),
        "syscalls": "seccomp filter (openshell rules), no_new_privs",
        "user": f"uid {record.get('inner_uid', _bwrap.SANDBOX_UID)} in a user namespace (host uid "
        f"{record.get('uid')}), no capabilities",
        "resources": (record.get("enforcement") or {}).get("kind", ""),
    }


def _owner(record: dict) -> dict:
    """{"pid", "alive"} of the host process the sandbox serves; {} when it has none (CLI sandboxes)."""
    owner = record.get("owner") or {}
    if not owner.get("pid"):
        return {}
    return {"pid": owner["pid"], "alive": _state.alive(owner["pid"], owner.get("start"))}
