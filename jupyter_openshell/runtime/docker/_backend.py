"""The Docker backend: one container per sandbox, with the local backend's walls, on a Docker Engine.

A sandbox is a container of its runtime image (`_runtime_image`: the user's image, or the default one,
plus the agent): `network_mode: none` (the only way out is the proxy channel, `<state>/sandboxes/<name>/
chan` bound read-only at /run/openshell, relayed by the same agent on 127.0.0.1:3128), a non-root user
(the policy's `process.user`; root refused), every capability dropped, `no-new-privileges`, the seccomp
profile generated from the local filter's rules (`_profile`), a read-only root filesystem, /tmp and
/dev/shm tmpfs of `resources.disk`, cgroup limits (memory without swap, pids, CPU) and the wall-clock
`timeout` kept by PID 1 (`_init.py`). Host paths inside: the workspace (the one writable bind), the
channel, a copy of the CA bundle, the agent's control directory, and what the spec or policy binds.
The workspace is the local backend's (`_workspace`): the same host uid (as root a reserved one, never
an existing user's unless it owns the given workspace), disk limit (`_disk`: a private workspace as root
is the loop-mounted ext4 image, mounted on the host and bound in) and protected entries (`_protect`,
read-only binds the engine makes by path, checked once the container runs: `_mounts`).
Exec goes through the agent's control socket, which it makes in `<state>/sandboxes/<name>/agent`
(bound at /run/openshell-agent): the same protocol, streaming, exit codes and signals as locally. The
agent serves host processes only; the host checks the socket's owner is the agent it recorded.
Every container is labelled with the state directory, sandbox name and instance, so `cleanup` finds
the ones whose record is gone. It must never give a container a network, a capability, the engine's
socket, or a host path beyond those.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ... import paths
from .. import _agent_env, _bwrap, _disk, _kernel_channel, _links, _resources, _state, _workspace
from .._exec import RemoteProcess
from .._types import Backend, Bind, KernelChannel, SandboxError, SandboxInfo, SandboxSpec, check_name
from . import _engine, _mounts, _profile, _runtime_image
from ._image import default_image

AGENT_MOUNT = "/run/openshell-agent"
READY_TIMEOUT = 30.0
# Runs the module named next with the runtime layer's package first on sys.path: -I keeps the workspace (the
# kernel's cwd) off it while the kernel starts, and ignores PYTHONPATH.
RUN_MODULE = (
    f"import runpy, sys; sys.path.insert(0, {_runtime_image.LIB_DIR!r}); "
    "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)"
)
GPU_NOTE = "NVIDIA GPUs through the engine's device requests (needs the NVIDIA Container Toolkit)"


def _container_name(name: str, token: str) -> str:
    return f"openshell-{name}-{token}"


class DockerBackend(Backend):
    name = "docker"

    # --- create -------------------------------------------------------------------------------
    def create(self, spec: SandboxSpec) -> SandboxInfo:
        name = check_name(spec.name or f"sb-{secrets.token_hex(4)}")
        text, policy = _links.policy_of(spec)
        image = spec.image or default_image()
        runtime = _runtime_image.prepare(image)  # (before the record: a bad image leaves nothing)
        with _state.locked():
            existing = _state.read(name)
            if existing is not None:
                if existing.get("backend", "local") != self.name:
                    raise SandboxError(
                        f"sandbox {name} exists on the {existing.get('backend', 'local')} backend; "
                        f"pick another --name or remove it with `openshell sandbox rm {name}`"
                    )
                if self._running(existing):
                    raise SandboxError(
                        f"sandbox {name} already exists and is running; pick another --name "
                        f"or remove it with `openshell sandbox rm {name}`"
                    )
                self._teardown(name, existing, remove=True)
            directory = paths.ensure_private_dir(_state.directory(name))
            record = {
                "name": name,
                "backend": self.name,
                "state": "creating",
                "created": _state.now(),
                "policy_file": str(_links.policy_path(name)),
                "image": image,
                "runtime_image": runtime.tag,
                "python": runtime.python,
                "kernel_missing": runtime.kernel_missing(),
                "token": secrets.token_hex(6),
                "creator": [os.getpid(), _state.start_time(os.getpid())],
            }
            _state.write(record)
        try:
            return self._start(name, directory, record, spec, policy, text, runtime)
        except BaseException:
            self._teardown(name, record, remove=True)
            raise

    def _start(
        self,
        name: str,
        directory: Path,
        record: dict,
        spec: SandboxSpec,
        policy: Any,
        text: str,
        runtime: _runtime_image.RuntimeImage,
    ) -> SandboxInfo:
        client = _engine.client()
        user, _uid = _agent_env.sandbox_user(policy)  # (refuses root; inside, the uid is the host uid)
        _agent_env.check_policy_paths(policy)
        limits = _links.limits(policy)
        gpu = bool(policy.gpu if spec.gpu is None else spec.gpu)
        tmp_size = limits.disk or _agent_env.DEFAULT_TMP
        exposed, reserved = _workspace.exposed_dir(directory, record["token"])
        record["exposed"] = str(exposed)
        _state.write(record)
        workspace, own_ws, created = _workspace.choose(spec.workspace, exposed)
        record.update(workspace=str(workspace), workspace_owned=own_ws)
        disk = _workspace.attach_disk(record, workspace, own_ws, limits.disk, exposed)
        uid = _workspace.host_uid(reserved, workspace, created, exposed)
        record.update(
            uid=uid,
            user=user,
            limits=limits.to_dict(),
            gpu=gpu,
            tmp_size=tmp_size,
            control=str(paths.layout().agent_socket(name)),
            container_name=_container_name(name, record["token"]),
        )
        _state.write(record)
        chan = paths.layout().sandbox_channel(name)
        chan.mkdir(mode=0o711, exist_ok=True)
        chan.chmod(0o711)
        agent_dir = paths.layout().agent_dir(name)
        agent_dir.mkdir(mode=0o700, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(agent_dir, uid, uid)
        # Its policy becomes current and the proxy opens its gateway while the container starts.
        publish = _links.in_background(_links.publish, name, policy, record["created"])
        protected: list[tuple[str, int, bool]] = []
        planned: list[_mounts.Planned] = []
        try:
            protected = _workspace.protect(record, workspace, disk, policy)
            ca_pem = _links.ca_bundle()
            if not ca_pem:  # first sandbox of this state dir: the proxy makes the CA
                _links.ensure_proxy()
                ca_pem = _links.ca_bundle()
            ca = paths.layout().sandbox_ca_copy(name)
            ca.write_bytes(ca_pem)
            ca.chmod(0o644)
            mount = _engine.sdk().types.Mount
            ws_mounts, tmpfs, planned = _mounts.workspace_mounts(mount, str(workspace), disk, protected, uid)
            binds = _kernel_channel.binds(spec, record, uid)
            mounts = self._mounts(
                binds, policy, workspace, ws_mounts, tmpfs, chan, agent_dir, ca, tmp_size, gpu
            )
            config = self._agent_config(name, record, spec, binds, policy, runtime, limits, bool(ca_pem))
            kwargs = self._container_kwargs(
                record, runtime, config, mounts, tmpfs, limits, tmp_size, gpu, uid
            )
            errors = _engine.errors()
            try:
                container = client.containers.create(**kwargs)
                record["container"] = container.id
                _state.write(record)
                container.start()
            except errors.APIError as exc:
                raise SandboxError(
                    f"sandbox {name} did not start: the engine refused the container: {_explain(exc, gpu)}"
                ) from None
            self._wait_ready(name, container, Path(record["control"]))
            container.reload()
            init = int(container.attrs["State"]["Pid"])
            record.update(pid=init, pid_start=_state.start_time(init))
            agent = _only_child(init)
            # The engine bound paths: before anything runs in it, each is what the plan holds open.
            _mounts.verify(name, init, planned)
            record.update(
                agent_pid=agent,
                agent_start=_state.start_time(agent) if agent else None,
                state="running",
                enforcement=_enforcement(client),
            )
            warning = publish()
            record["warnings"] = [*([warning] if warning else []), *record["protect"].get("warnings", [])]
        except BaseException:
            with contextlib.suppress(BaseException):
                publish()  # (before the teardown unregisters it)
            raise
        finally:
            for fd in {fd for _rel, fd, _w in (*protected, *planned)}:
                os.close(fd)
        _state.write(record)
        return self._info(record, {record["container"]: "running"})

    def _mounts(
        self,
        extra: list[Bind],
        policy: Any,
        workspace: Path,
        ws_mounts: list[Any],
        tmpfs: dict[str, str],
        chan: Path,
        agent_dir: Path,
        ca: Path,
        tmp_size: int,
        gpu: bool,
    ) -> list[Any]:
        """Every mount but the workspace's (`ws_mounts`, from `_mounts.workspace_mounts`) added to
        them; `tmpfs` gets /tmp, /sys and the masks."""
        mount = _engine.sdk().types.Mount
        binds = [
            (str(chan), _bwrap.CHAN_PATH, False),
            (str(agent_dir), AGENT_MOUNT, True),
            (str(ca), _bwrap.CA_PATH, False),
            *((p, p, False) for p in policy.filesystem.read_only),
            *((p, p, True) for p in policy.filesystem.read_write),
            *((b.source, b.target, b.writable) for b in extra),
        ]
        mounts = [*ws_mounts, *(mount(t, src, type="bind", read_only=not rw) for src, t, rw in binds)]
        tmpfs["/tmp"] = f"rw,nosuid,nodev,size={tmp_size},mode=1777"
        if not gpu:  # (nvidia-smi walks /sys; without a GPU nothing of the host's /sys is shown)
            tmpfs["/sys"] = "ro,nosuid,nodev,noexec,size=0,mode=0555"
        # hidden paths, and the state directory wherever a bind would show it: masked
        state = os.path.realpath(paths.state_dir())
        masked = [(p, p) for p in policy.filesystem.hidden]
        shown = [*binds, *([(str(workspace), _bwrap.WORKSPACE, True)] if ws_mounts else [])]
        for source, target, _rw in shown:
            real = os.path.realpath(source)
            if state == real or state.startswith(real.rstrip("/") + "/"):
                masked.append((os.path.normpath(os.path.join(target, os.path.relpath(state, real))), state))
        empty = ca.parent / "empty"
        for inside, host in masked:
            if os.path.isfile(host) or (not os.path.exists(host) and "." in os.path.basename(inside)):
                empty.touch(mode=0o000, exist_ok=True)
                mounts.append(mount(inside, str(empty), type="bind", read_only=True))
            else:
                tmpfs[inside] = "ro,nosuid,nodev,noexec,size=0,mode=000"
        return mounts

    def _agent_config(
        self,
        name: str,
        record: dict,
        spec: SandboxSpec,
        binds: list[Bind],
        policy: Any,
        runtime: _runtime_image.RuntimeImage,
        limits: Any,
        ca: bool,
    ) -> dict:
        env = {k: v for k, v in runtime.env.items() if k not in ("HOSTNAME", "HOME")}
        env.update(
            {
                "PATH": runtime.env.get("PATH") or _agent_env.SYSTEM_PATH,
                "HOME": _agent_env.HOME,
                "USER": record["user"],
                "LOGNAME": record["user"],
                "SHELL": "/bin/sh",
                "LANG": env.get("LANG", "C.UTF-8"),
                "TMPDIR": "/tmp",
                "PYTHONPATH": _runtime_image.LIB_DIR,  # the OpenShell kernel's package
                "OPENSHELL_SANDBOX": name,
                "NO_PROXY": "localhost,127.0.0.1,::1",
                "no_proxy": "localhost,127.0.0.1,::1",
            }
        )
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            env[var] = env[var.lower()] = _agent_env.PROXY_URL
        if ca:
            env.update(dict.fromkeys(_agent_env.CA_VARS, _bwrap.CA_PATH))
        env.update(spec.env)
        writable = [b.target for b in binds if b.writable]
        return {
            "name": name,
            "control_path": f"{AGENT_MOUNT}/control.sock",
            "proxy_sock": f"{_bwrap.CHAN_PATH}/proxy.sock",
            "listen": ["127.0.0.1", _agent_env.PROXY_PORT],
            "relay_max": _agent_env.relay_max(),
            "env": env,
            "workdir": _bwrap.WORKSPACE,
            "rlimits": {},  # (the engine sets them: ulimits)
            "lifetime": limits.timeout or 0,
            # The whole image may be read and run; writes only where the walls already allow them.
            "landlock": {
                "ro": ["/"],
                "rw": [_bwrap.WORKSPACE, "/tmp", "/dev", *policy.filesystem.read_write, *writable],
                "list": [],
            },
        }

    def _container_kwargs(
        self,
        record: dict,
        runtime: _runtime_image.RuntimeImage,
        config: dict,
        mounts: list[Any],
        tmpfs: dict[str, str],
        limits: Any,
        tmp_size: int,
        gpu: bool,
        uid: int,
    ) -> dict:
        types = _engine.sdk().types
        ulimits = [types.Ulimit(name="nofile", soft=4096, hard=4096)]
        if limits.disk:
            ulimits.append(types.Ulimit(name="fsize", soft=limits.disk, hard=limits.disk))
        kwargs: dict[str, Any] = {
            "image": runtime.tag,
            "entrypoint": [runtime.python, "-I", "-S", "-B", f"{_runtime_image.AGENT_DIR}/_init.py"],
            "command": [json.dumps(config)],
            "name": record["container_name"],
            "hostname": record["name"],
            "user": f"{uid}:{uid}",
            "working_dir": _bwrap.WORKSPACE,
            "environment": {},
            "labels": {
                _engine.LABEL_STATE: os.path.realpath(paths.state_dir()),
                _engine.LABEL_SANDBOX: record["name"],
                _engine.LABEL_CREATED: repr(record["created"]),
                _engine.LABEL_EXPOSED: record["exposed"],
            },
            "network_mode": "none",
            "dns": ["127.0.0.1"],  # (nothing answers there: lookups fail at once; the proxy resolves)
            "dns_opt": ["attempts:1", "timeout:1"],
            # as in the local backend's network namespace: ::1 on lo (the engine turns IPv6 off), and
            # no ICMP echo sockets (the engine allows them to every group)
            "sysctls": {
                "net.ipv6.conf.all.disable_ipv6": "0",
                "net.ipv6.conf.lo.disable_ipv6": "0",
                "net.ipv4.ping_group_range": "1 0",
            },
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges", f"seccomp={_profile.profile_json()}"],
            "read_only": True,
            "tmpfs": tmpfs,
            "shm_size": tmp_size,
            "mounts": mounts,
            "ipc_mode": "private",
            "ulimits": ulimits,
            "log_config": types.LogConfig(type="json-file", config={"max-size": "1m", "max-file": "2"}),
        }
        if limits.memory:
            kwargs.update(mem_limit=limits.memory, memswap_limit=limits.memory)
        if limits.pids:
            kwargs["pids_limit"] = limits.pids
        if limits.cpu:
            kwargs["nano_cpus"] = int(limits.cpu * 1e9)
        if gpu:
            if not os.path.exists("/dev/nvidiactl"):
                raise SandboxError(
                    "this sandbox asks for a GPU (`gpu: true` in its policy or --gpu) but this host has no "
                    "NVIDIA "
                    "device (/dev/nvidiactl is missing): install the NVIDIA driver, or remove `gpu: true`"
                )
            kwargs["device_requests"] = [types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
        return kwargs

    def _wait_ready(self, name: str, container: Any, control: Path) -> None:
        """Until the agent's control socket is there; SandboxError with the log if the container ends."""
        deadline = time.monotonic() + READY_TIMEOUT
        checked = time.monotonic()
        while not control.exists():
            now = time.monotonic()
            if now > deadline or now - checked > 0.25:
                checked = now
                container.reload()
                if container.status not in ("created", "running") or now > deadline:
                    tail = container.logs(tail=20).decode(errors="replace").strip()
                    raise SandboxError(
                        f"sandbox {name} did not start (container {container.status}):\n{tail or '(no log)'}"
                    )
            time.sleep(0.002)

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
        record = self._record(name)
        if not argv:
            raise SandboxError("exec needs a command, e.g. `openshell sandbox exec NAME -- python -V`")
        agent = record.get("agent_pid")
        if agent and not _state.alive(agent, record.get("agent_start")):
            agent = None  # (gone: the connection is refused anyway and says so)
        return RemoteProcess(
            record["control"],
            argv,
            env=env,
            cwd=cwd,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            sandbox=name,
            peer_pid=agent,
        )

    def kernel_channel(self, name: str) -> KernelChannel:
        """ipc sockets in the channel bound at /tmp/.openshell-kernel; the image's python3 runs the kernel."""
        record = self._record(name)
        if record.get("kernel_missing"):  # an image without ipykernel
            raise SandboxError(record["kernel_missing"])
        return _kernel_channel.of(record, (record.get("python") or "python3", "-I", "-c", RUN_MODULE))

    # --- lifecycle ----------------------------------------------------------------------------
    def _record(self, name: str) -> dict:
        record = _state.read(check_name(name))
        if record is None:
            raise SandboxError(f"no sandbox named {name}; `openshell sandbox ls` lists them")
        if record.get("backend") != self.name:
            raise SandboxError(f"sandbox {name} is not a docker sandbox (backend {record.get('backend')})")
        return record

    @staticmethod
    def _running(record: dict) -> bool:
        return _state.alive(record.get("pid"), record.get("pid_start"))

    def _remove_container(self, record: dict) -> None:
        ident = record.get("container") or record.get("container_name")
        if not ident:
            return
        errors = _engine.errors()
        with contextlib.suppress(errors.NotFound):
            _engine.client().api.remove_container(ident, force=True, v=True)

    def _teardown(self, name: str, record: dict, remove: bool) -> None:
        unregister = _links.in_background(_links.unregister, name, record.get("created"))
        init = None  # the container's PID 1: it exits only once every process of its namespace is gone
        if self._running(record):
            with contextlib.suppress(OSError):
                init = os.pidfd_open(record["pid"])
        try:
            if remove:
                self._remove_container(record)
            else:
                self._kill(record)
            if init is not None:
                select.select([init], [], [], 10.0)
        finally:
            if init is not None:
                os.close(init)
            unregister()
        _workspace.release(name, record, remove)
        with contextlib.suppress(FileNotFoundError):
            Path(record.get("control") or paths.layout().agent_socket(name)).unlink()
        if not remove:
            return
        _kernel_channel.remove(record.get("kernel_channel"))
        _workspace.remove_exposed(record.get("exposed"))
        _workspace.rmtree(_state.directory(name))  # a workspace given with --workspace is never inside it

    def _kill(self, record: dict) -> None:
        ident = record.get("container")
        if not ident:
            return
        errors = _engine.errors()
        with contextlib.suppress(errors.NotFound, errors.APIError):
            api = _engine.client().api
            api.kill(ident)
            api.wait(ident, timeout=30)

    def stop(self, name: str) -> SandboxInfo:
        record = self._record(name)
        self._teardown(name, record, remove=False)
        record["state"] = "stopped"
        _state.write(record)
        return self._info(record, {})

    def destroy(self, name: str) -> None:
        self._teardown(name, self._record(name), remove=True)

    def status(self, name: str) -> SandboxInfo:
        record = self._record(name)
        return self._info(record, self._states(record.get("container")))

    def _records(self) -> list[dict]:
        out = []
        for name in _state.names():
            record = _state.read(name)
            if record is not None and record.get("backend") == self.name:
                out.append(record)
        return out

    def list(self) -> list[SandboxInfo]:
        records = self._records()
        states = self._states() if records else {}
        return [self._info(r, states) for r in records]

    def _states(self, ident: str | None = None) -> dict[str, str]:
        """{container id: engine status} of this state directory's containers (or of one)."""
        api = _engine.client().api
        if ident:
            with contextlib.suppress(_engine.errors().NotFound):
                return {ident: api.inspect_container(ident)["State"]["Status"]}
            return {}
        found = api.containers(all=True, filters={"label": f"{_engine.LABEL_STATE}={_state_label()}"})
        return {c["Id"]: c["State"] for c in found}

    def cleanup(self) -> list[str]:
        try:
            _engine.client()
        except SandboxError:
            if self._records():
                raise
            return []  # (no engine and no docker sandbox here: nothing to clean)
        cleaned = []
        for info in self.list():
            if info.state == "exited":
                self._teardown(info.name, _state.read(info.name) or {"name": info.name}, remove=True)
                cleaned.append(info.name)
        # containers of this state directory whose record is gone or names another instance
        api = _engine.client().api
        for c in api.containers(all=True, filters={"label": f"{_engine.LABEL_STATE}={_state_label()}"}):
            labels = c.get("Labels") or {}
            name = labels.get(_engine.LABEL_SANDBOX, "")
            record = _state.read(name) if name else None
            if record is not None and record.get("container") in (c["Id"], None):
                continue
            with contextlib.suppress(_engine.errors().NotFound):
                api.remove_container(c["Id"], force=True, v=True)
            # (its image unmounted, its uid freed; a record naming another container keeps its own)
            if record is None or record.get("exposed") != labels.get(_engine.LABEL_EXPOSED):
                _workspace.remove_exposed(labels.get(_engine.LABEL_EXPOSED))
            if record is None and name:
                _links.unregister(name, float(labels.get(_engine.LABEL_CREATED) or 0) or None)
            cleaned.append(f"container {c['Id'][:12]}")
        return cleaned

    def _info(self, record: dict, states: dict[str, str]) -> SandboxInfo:
        state = record.get("state", "exited")
        if state == "creating" and not _workspace.in_use(record):
            state = "exited"  # (its creator died midway)
        elif state == "running" and states.get(record.get("container") or "") != "running":
            state = "exited"
        limits = record.get("limits", {})
        tmp_size = record.get("tmp_size") or _agent_env.DEFAULT_TMP
        disk = _disk.Disk.from_dict(record.get("disk"))
        return SandboxInfo(
            name=record["name"],
            state=state,
            backend=self.name,
            address="",
            workspace=record.get("workspace", ""),
            policy_file=record.get("policy_file", ""),
            created=record.get("created", 0.0),
            enforcement=_layers(record),
            limits=limits,
            gpu=record.get("gpu", False),
            image=record.get("image"),
            details={
                "pid": record.get("pid"),
                "uid": record.get("uid"),
                "warnings": record.get("warnings", []),
                "runtime_image": record.get("runtime_image"),
                "container": (record.get("container") or "")[:12],
                "tmp_size": tmp_size,
                "resources": _describe(limits, tmp_size, disk, state),
                "protected": _workspace.details(record),
                "gpu": GPU_NOTE if record.get("gpu") else None,
                **_kernel_details(record),
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
        ident = record.get("container")
        if not ident:
            return ""
        try:
            return _engine.client().api.logs(ident).decode(errors="replace")
        except _engine.errors().NotFound:
            return ""


def _state_label() -> str:
    return os.path.realpath(paths.state_dir())


def _only_child(pid: int) -> int | None:
    """The one child of `pid` (the agent, the only child of PID 1 before any command ran)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if len(children) == 1 else None


def _explain(exc: Any, gpu: bool) -> str:
    text = str(getattr(exc, "explanation", None) or exc)
    if gpu and "capabilities" in text and "gpu" in text:
        return (
            f"{text}. This engine cannot hand GPUs to containers: install the NVIDIA Container Toolkit "
            "(nvidia-ctk runtime configure --runtime=docker), or remove `gpu: true`"
        )
    return text


_ENGINE_CGROUP: dict[str, str] = {}


def _enforcement(client: Any) -> str:
    if "kind" not in _ENGINE_CGROUP:
        version = str(client.info().get("CgroupVersion") or "1")
        _ENGINE_CGROUP["kind"] = f"docker (cgroup v{version})"
    return _ENGINE_CGROUP["kind"]


def _describe(limits: dict, tmp_size: int, disk: _disk.Disk | None, state: str) -> dict[str, dict]:
    """What enforces each resource (for `ls`), as `_resources.describe` says it for the local backend;
    the disk entry is the same (`_resources.describe_disk`): the engine's fsize ulimit is RLIMIT_FSIZE."""
    timeout = limits.get("timeout")
    return {
        "cpu": {"limit": limits.get("cpu"), "by": "cgroup (docker NanoCpus)", "note": ""},
        "memory": {"limit": limits.get("memory"), "by": "cgroup (docker Memory, no swap)", "note": ""},
        "pids": {"limit": limits.get("pids"), "by": "cgroup (docker PidsLimit)", "note": ""},
        "disk": _resources.describe_disk(limits, limits.get("disk"), tmp_size, disk, state),
        "timeout": {"limit": timeout, "by": "openshell init (PID 1)" if timeout else "none", "note": ""},
    }


def _layers(record: dict) -> dict[str, str]:
    """Each wall of the sandbox and what makes it (`SandboxInfo.enforcement`)."""
    return {
        "network": "network_mode none; out only through the proxy channel (/run/openshell)",
        "filesystem": "read-only root, writable /workspace (its protected entries read-only binds) and "
        "tmpfs /tmp; Landlock by the agent",
        "syscalls": "seccomp profile (the local backend's rules), no-new-privileges",
        "user": f"uid {record.get('uid')} (non-root), all capabilities dropped",
        "resources": record.get("enforcement", ""),
    }


def _kernel_details(record: dict) -> dict:
    """`python` (the interpreter inside) and, when the image cannot run the kernel, `kernel_missing`."""
    out = {"python": record["python"]} if record.get("python") else {}
    if record.get("kernel_missing"):
        out["kernel_missing"] = record["kernel_missing"]
    return out
