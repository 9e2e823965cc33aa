"""Runs the policy proxy: mitmproxy with our addons, plus (in the primary process) the sandbox gateway,
the control API and any worker processes.

Workers: with `workers > 1` every process listens on the same port with SO_REUSEPORT, so the kernel
spreads host-caller connections across them; each worker is a full proxy (own policy watcher; its flow
records go to the primary, which writes the log). Sandbox connections arrive on the gateway (in the
primary) and are spread round-robin: served here, or passed with their sandbox's name to a worker over a
private socket pair (SCM_RIGHTS). The primary forwards registry changes to workers over their stdin (one
JSON line per command, one JSON line of answer on stdout) and answers the caller only when every worker
applied it. It must never serve a sandbox connection that did not come through that sandbox's channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mitmproxy import options
from mitmproxy.master import Master
from mitmproxy.proxy import mode_servers

from ..hostproc import SYSTEM_PATH, python_argv, safe_env
from ..paths import Layout
from . import _handoff, _protocol
from ._addresses import Resolver
from ._ca import ensure_ca, upstream_trust
from ._control import ControlServer
from ._flowlog import ROTATE_BYTES, ROTATE_KEEP, FlowLog, FlowRing, PipeFlowLog
from ._gateway import Gateway
from ._kube import KubeSource
from ._limits import Limits
from ._pipeline import Pipeline, lean_master
from ._policies import PolicySet
from ._registry import HOST_CALLER, Registry, RegistryError, SandboxEntry, entry_from_dict
from ._secrets import RedactingFilter, SecretStore
from ._state import ProxyState
from .addons.addresses import AddressGuard
from .addons.enforce import EgressEnforcer
from .addons.flowlog import FlowRecorder
from .addons.identity import Identity
from .addons.inference import InferenceRouter
from .addons.limits import BodyLimit, HeadLimits
from .addons.reload import PolicyWatcher
from .addons.upgrades import UpgradeGuard
from .addons.upstream import UpstreamFailures

log = logging.getLogger("jupyter_openshell.proxy")
STREAM_THRESHOLD = "256k"


@dataclass
class ProxyConfig:
    policy_file: Path
    state_dir: Path
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    workers: int = 1
    worker_index: int = 0  # 0: primary
    upstream_ca: Path | None = None  # extra CA certificates trusted for upstream TLS
    upstream_trust: str = "system+certifi"  # or "system", "certifi", or a PEM file trusted alone
    limits: Limits = field(default_factory=Limits)
    connect_timeout: float = 30.0  # seconds an upstream connection attempt may take (504 after)
    resolve: dict[str, str] = field(default_factory=dict)
    reload_interval: float = 0.05
    flow_fd: int | None = None  # a worker: the pipe its flow records go to (the primary writes the log)
    channel_fd: int | None = None  # a worker: the socket pair end sandbox connections arrive on
    flow_max_bytes: int = ROTATE_BYTES  # rotate flows.jsonl when it would pass this size
    flow_keep: int = ROTATE_KEEP  # rotated files kept (flows.jsonl.1 ..)
    kube_namespace: str | None = None  # watch this namespace's sandbox ConfigMaps (`_kube.KubeSource`)
    kubeconfig: str | None = None  # for the watch, else the in-cluster service account


def default_addons(state: ProxyState, reload_interval: float = 0.05, limits: Limits | None = None,
                   connect_timeout: float = 30.0) -> list[Any]:
    """Our addons in hook order: identity (credential channels), size limits of the head, decide, body
    limit, route, upgrades, check the address, answer upstream failures, record; plus the policy watcher."""
    limits = limits or Limits()
    return [Identity(state), HeadLimits(state, limits), EgressEnforcer(state), BodyLimit(limits),
            InferenceRouter(state), UpgradeGuard(), AddressGuard(state), UpstreamFailures(connect_timeout),
            FlowRecorder(state), PolicyWatcher(state, reload_interval)]


def _use_reuse_port() -> None:
    async def listen(self, host: str, port: int):
        return [await asyncio.start_server(self.handle_stream, host, port, reuse_port=True)]

    mode_servers.AsyncioServerInstance.listen = listen  # type: ignore[method-assign]


def _registered_file(state_dir: Path) -> Path:
    return Layout(state_dir).proxy_registrations


def _entries(items: Any) -> list[SandboxEntry]:
    """Registrations from their dicts (the persisted file, a command to a worker); invalid ones skipped."""
    out = []
    for item in items if isinstance(items, list) else []:
        try:
            out.append(entry_from_dict(item.get("name", ""), item))
        except (RegistryError, AttributeError) as exc:
            log.warning("registration %r skipped: %s", item, exc)
    return out


def _load_registered(state_dir: Path) -> list[SandboxEntry]:
    try:
        return _entries(json.loads(_registered_file(state_dir).read_text()))
    except (OSError, ValueError):
        return []


def _save_registered(state_dir: Path, entries: list[SandboxEntry]) -> None:
    path = _registered_file(state_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([e.to_dict() for e in entries]))
    os.replace(tmp, path)


def setup_logging(secrets: SecretStore) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("jupyter_openshell").setLevel(logging.INFO)


class ProxyProcess:
    """One proxy process (primary or worker)."""

    def __init__(self, cfg: ProxyConfig, ring: FlowRing | None = None):
        self.cfg = cfg
        sd = cfg.state_dir
        layout = Layout(sd)
        for sub in (layout.ca_dir, layout.secrets_dir, layout.policies_dir, layout.sandboxes_dir,
                    layout.flows_dir, layout.run_dir):
            sub.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.secrets = SecretStore(layout.secrets_dir)
        setup_logging(self.secrets)
        log_path = layout.flow_log
        flowlog: FlowLog | PipeFlowLog
        if cfg.worker_index:
            if cfg.flow_fd is None:
                raise SystemExit("openshell proxy: a worker needs --flow-fd (the primary starts workers)")
            flowlog = PipeFlowLog(cfg.flow_fd, log_path)
        else:
            flowlog = FlowLog(log_path, cfg.flow_max_bytes, cfg.flow_keep, ring.add if ring else None)
        self.state = ProxyState(
            state_dir=sd, registry=Registry(), policies=PolicySet(), secrets=self.secrets,
            flowlog=flowlog, resolver=Resolver(cfg.resolve))
        self.state.policies.set_source(HOST_CALLER, cfg.policy_file)
        self.master: Master | None = None
        self.port = cfg.listen_port
        self.started = time.time()

    # -- registry ---------------------------------------------------------------------------
    def apply_registered(self, entries: list[SandboxEntry]) -> dict[str, str]:
        """Make the registry hold exactly `entries`; returns the errors (an entry whose channel another
        sandbox holds). A sandbox registered again (maybe a new one under an old name) replaces the
        earlier registration, whose connections then no longer serve a policy."""
        errors: dict[str, str] = {}
        keep = {e.name for e in entries}
        for name in set(self.state.registry.names()) - keep:
            self.state.registry.remove(name)
            self.state.policies.drop(name)
        changed = {e.name for e in entries if self.state.registry.get(e.name) != e}
        for name in changed:  # free changed channels before any is taken again
            self.state.registry.remove(name)
        for entry in entries:
            if entry.name not in changed:
                continue  # same sandbox as before: its policy is watched already
            try:
                self.state.registry.add(entry)
            except RegistryError as exc:
                errors[entry.name] = str(exc)
                self.state.policies.drop(entry.name)
                continue
            self.state.policies.set_source(entry.name, entry.policy_file)
        return errors

    def policy_status(self) -> dict[str, Any]:
        return self.state.policies.status()

    def policy_versions(self) -> dict[str, str | None]:
        return {name: st["version"] for name, st in self.state.policies.status().items()}

    # -- mitmproxy --------------------------------------------------------------------------
    async def start_master(self) -> None:
        if self.cfg.workers > 1:
            _use_reuse_port()
        cfg = self.cfg
        _protocol.install(cfg.limits)
        try:
            cafile, capath = upstream_trust(Layout(cfg.state_dir).ca_dir, cfg.upstream_trust, cfg.upstream_ca)
        except ValueError as exc:
            raise SystemExit(f"openshell proxy: {exc} (see --upstream-trust and --upstream-ca)") from None
        opts = options.Options(listen_host=cfg.listen_host, listen_port=cfg.listen_port,
                               confdir=str(Layout(cfg.state_dir).ca_dir))
        self.master = lean_master(opts, Pipeline(default_addons(self.state, cfg.reload_interval, cfg.limits,
                                                                cfg.connect_timeout)))
        updates: dict[str, Any] = {
            "connection_strategy": "lazy",
            "stream_large_bodies": STREAM_THRESHOLD,
            "ssl_verify_upstream_trusted_ca": str(cafile),
        }
        if capath:
            updates["ssl_verify_upstream_trusted_confdir"] = capath
        self.master.options.update(**updates)

    async def wait_listening(self) -> int:
        assert self.master is not None
        server = self.master.addons.get("proxyserver")
        for _ in range(400):
            addrs = server.listen_addrs()
            if addrs:
                return addrs[0][1]
            await asyncio.sleep(0.025)
        raise RuntimeError("mitmproxy did not start listening")


class Primary:
    """The primary process: proxy + gateway + control API + workers."""

    def __init__(self, cfg: ProxyConfig):
        self.cfg = cfg
        self.ring = FlowRing(Layout(cfg.state_dir).flow_log)
        self.proc = ProxyProcess(cfg, self.ring)
        self.gateway: Gateway | None = None
        self.control: ControlServer | None = None
        self.workers: list[asyncio.subprocess.Process] = []
        self._channels: list[socket.socket] = []  # per worker: where its sandbox connections are sent
        self._next = 0  # round-robin over this process and the workers
        self._flow_pipes: dict[int, bytearray] = {}  # read end of a worker's flow pipe -> partial line
        self._worker_lock = asyncio.Lock()
        self._registry_lock = asyncio.Lock()  # one registry change at a time, workers told in order
        self._seq = 0
        self.info: dict[str, Any] = {}
        self.kube: KubeSource | None = None
        self._kube_names: set[str] = set()  # registrations the Kubernetes source made

    async def run(self) -> int:
        cfg = self.cfg
        control_path = Layout(cfg.state_dir).proxy_control
        if await _answers(control_path):
            raise SystemExit(f"openshell proxy: another proxy already serves {control_path}; "
                             "stop it first (ProxyClient().stop())")
        ensure_ca(Layout(cfg.state_dir).ca_dir)
        if cfg.workers > 1 and cfg.listen_port == 0:
            cfg.listen_port = _free_port(cfg.listen_host)
        await self.proc.start_master()
        master = self.proc.master
        assert master is not None
        run_task = asyncio.ensure_future(master.run())
        try:
            port = await asyncio.wait_for(self.proc.wait_listening(), 15)
        except Exception:
            if run_task.done() and run_task.exception():
                raise run_task.exception() from None
            raise
        cfg.listen_port = port
        target_host = "127.0.0.1" if cfg.listen_host in ("", "0.0.0.0") else cfg.listen_host
        self.gateway = Gateway(self._dispatch)
        for w in range(1, cfg.workers):
            self.workers.append(await self._spawn_worker(w))
        for name, err in (await self._apply(_load_registered(cfg.state_dir))).items():
            log.warning("sandbox %s not restored: %s", name, err)
        self.control = ControlServer(control_path, self.handle)
        await self.control.start()
        if cfg.kube_namespace:
            self.kube = KubeSource(cfg.kube_namespace, cfg.state_dir, self._apply_kube, cfg.kubeconfig)
            self.kube.start()
        self.info = {"pid": os.getpid(), "listen": f"{target_host}:{port}", "control": str(control_path),
                     "started": self.proc.started, "workers": cfg.workers,
                     "ca_bundle": str(Layout(cfg.state_dir).ca_bundle)}
        run_json = Layout(cfg.state_dir).proxy_run_file
        tmp = run_json.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.info))
        os.replace(tmp, run_json)
        log.info("proxy listening on %s:%s (control %s, %s worker(s))", target_host, port, control_path,
                 cfg.workers)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, master.shutdown)
        try:
            await run_task
        finally:
            await self._cleanup(run_json)
        return 0

    async def _cleanup(self, run_json: Path) -> None:
        if self.kube:
            self.kube.stop()
        if self.control:
            await self.control.stop()
        if self.gateway:
            await self.gateway.close_all()
        for chan in self._channels:
            chan.close()
        for w in self.workers:
            with contextlib.suppress(ProcessLookupError):
                w.terminate()
        for w in self.workers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(w.wait(), 5)
        for fd in list(self._flow_pipes):  # the workers' last records
            self._drain_flows(fd)
        with contextlib.suppress(OSError, ValueError):
            if json.loads(run_json.read_text()).get("pid") == os.getpid():
                run_json.unlink()

    # -- workers ----------------------------------------------------------------------------
    async def _spawn_worker(self, index: int) -> asyncio.subprocess.Process:
        cfg = self.cfg
        argv = python_argv("jupyter_openshell", "proxy", "--policy", str(cfg.policy_file),
                           "--listen", f"{cfg.listen_host}:{cfg.listen_port}", "--workers", str(cfg.workers),
                           "--worker-index", str(index), "--state-dir", str(cfg.state_dir))
        if cfg.upstream_ca:
            argv += ["--upstream-ca", str(cfg.upstream_ca)]
        lim = cfg.limits
        argv += ["--upstream-trust", cfg.upstream_trust, "--connect-timeout", str(cfg.connect_timeout),
                 "--max-request-line", str(lim.max_request_line),
                 "--max-header-bytes", str(lim.max_header_bytes),
                 "--max-header-count", str(lim.max_header_count), "--max-body", str(lim.max_body)]
        for k, v in cfg.resolve.items():
            argv += ["--resolve", f"{k}={v}"]
        read_end, write_end = os.pipe()
        with contextlib.suppress(OSError):  # room for bursts while this loop is busy (1 MiB: the default cap)
            fcntl.fcntl(write_end, 1031, 1 << 20)  # F_SETPIPE_SZ
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv += ["--flow-fd", str(write_end), "--channel-fd", str(theirs.fileno())]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                pass_fds=(write_end, theirs.fileno()), cwd="/", env=safe_env({"PATH": SYSTEM_PATH}))
        except BaseException:
            os.close(read_end)
            ours.close()
            raise
        finally:
            os.close(write_end)
            theirs.close()
        ours.setblocking(False)
        self._channels.append(ours)
        os.set_blocking(read_end, False)
        self._flow_pipes[read_end] = bytearray()
        asyncio.get_running_loop().add_reader(read_end, self._drain_flows, read_end)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if not line:
            raise RuntimeError(f"proxy worker {index} failed to start (see stderr)")
        return proc

    def _drain_flows(self, fd: int) -> None:
        """Number and append the complete records a worker sent; at EOF stop reading its pipe."""
        buf = self._flow_pipes[fd]
        while True:
            try:
                data = os.read(fd, 1 << 20)
            except BlockingIOError:
                break
            if not data:
                asyncio.get_running_loop().remove_reader(fd)
                del self._flow_pipes[fd]
                os.close(fd)
                break
            buf += data
            cut = buf.rfind(b"\n")
            if cut >= 0:
                self.proc.state.flowlog.write_lines(bytes(buf[:cut]).split(b"\n"))  # type: ignore[union-attr]
                del buf[:cut + 1]

    async def _tell_workers(self, cmd: dict[str, Any], timeout: float = 10) -> list[dict[str, Any]]:
        """Send `cmd` to every worker and collect their answers (in worker order). Each command carries
        a sequence number the worker echoes, so an answer that came too late for an earlier command
        is skipped instead of being taken for this command's."""
        answers = []
        async with self._worker_lock:
            self._seq += 1
            line_out = (json.dumps({**cmd, "seq": self._seq}) + "\n").encode()
            for w in self.workers:
                assert w.stdin is not None and w.stdout is not None
                try:
                    w.stdin.write(line_out)
                    await w.stdin.drain()
                    answers.append(await asyncio.wait_for(self._answer(w, self._seq), timeout))
                except (OSError, TimeoutError) as exc:
                    answers.append({"error": f"worker pid {w.pid} did not answer: {exc or 'timeout'}"})
        return answers

    @staticmethod
    async def _answer(w: asyncio.subprocess.Process, seq: int) -> dict[str, Any]:
        assert w.stdout is not None
        while line := await w.stdout.readline():
            answer = json.loads(line)
            if answer.get("seq") == seq:
                return answer
        return {"error": f"worker pid {w.pid} exited"}

    async def _apply(self, entries: list[SandboxEntry], reopen: str | None = None) -> dict[str, str]:
        """Make every process serve exactly `entries`; the gateway of `reopen` (a sandbox registering
        again, maybe a new one under an old name) and of any entry that changed is opened afresh."""
        errors = self.proc.apply_registered(entries)
        assert self.gateway is not None
        registry = self.proc.state.registry
        unix = {e.name for e in registry.entries() if e.socket is not None}
        for name in set(self.gateway.listening()) - unix:
            await self.gateway.close(name)
        for entry in registry.entries():
            if entry.socket is None:
                continue  # channel "token": its connections arrive on the TCP listener (addons/identity)
            if entry.name == reopen or not self.gateway.serves(entry):
                try:
                    await self.gateway.open(entry)
                except OSError as exc:
                    errors[entry.name] = f"cannot listen on {entry.socket}: {exc}"
                    registry.remove(entry.name)
                    self.proc.state.policies.drop(entry.name)
        _save_registered(self.cfg.state_dir, registry.entries())
        await self._tell_workers({"op": "registered", "entries": [e.to_dict() for e in registry.entries()]})
        return errors

    async def _apply_kube(self, entries: list[SandboxEntry]) -> dict[str, str]:
        """Make the Kubernetes source's registrations exactly `entries` (others are left as they are)."""
        async with self._registry_lock:
            names = {e.name for e in entries}
            others = [e for e in self.proc.state.registry.entries()
                      if e.name not in self._kube_names and e.name not in names]
            self._kube_names = names
            return await self._apply([*others, *entries])

    def _dispatch(self, entry: SandboxEntry, conn: socket.socket) -> None:
        """Serve a connection from `entry`'s channel here or in a worker (round-robin)."""
        self._next = (self._next + 1) % (len(self._channels) + 1)
        if self._next:
            message = json.dumps({"name": entry.name, "created": entry.created}).encode()
            try:
                socket.send_fds(self._channels[self._next - 1], [message], [conn.fileno()])
            except OSError:  # that worker is busy or gone: serve it here
                pass
            else:
                conn.close()
                return
        assert self.proc.master is not None
        _handoff.start(self.proc.master, self.proc.state, entry, conn)

    # -- control API ------------------------------------------------------------------------
    async def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p]
        if parts == ["status"] and method == "GET":
            return 200, await self.status()
        if len(parts) == 2 and parts[0] == "sandboxes" and method in ("POST", "DELETE"):
            async with self._registry_lock:  # read-modify-write of the registry, one at a time
                if method == "POST":
                    return await self._register(parts[1], body)
                return await self._unregister(parts[1], query.get("created"))
        if parts == ["flows"] and method == "GET":
            return self._flows(query)
        if parts == ["reload"] and method == "POST":
            changed = self.proc.state.policies.refresh(force=True)
            await self._tell_workers({"op": "reload"})
            return 200, {"changed": changed, "policies": self.proc.policy_status()}
        if parts == ["shutdown"] and method == "POST":
            assert self.proc.master is not None
            asyncio.get_running_loop().call_later(0.05, self.proc.master.shutdown)
            return 200, {"stopping": True}
        return 404, {"error": f"no route {method} {path}"}

    def _flows(self, query: dict[str, str]) -> tuple[int, Any]:
        sandbox = query.get("sandbox")
        try:
            since = float(query.get("since", 0) or 0)
            limit = int(query.get("limit", 200) or 200)
            after = int(query["after"]) if query.get("after") not in (None, "") else None
        except ValueError:
            return 400, {"error": "since must be a number, limit and after integers"}
        raw = query.get("created") or "any"
        created: float | bool | None = True
        if raw == "current" and sandbox is not None:
            entry = self.proc.state.registry.get(sandbox)
            created = entry.created if entry is not None else True
        elif raw not in ("any", "current"):
            try:
                created = None if raw == "none" else float(raw)
            except ValueError:
                return 400, {"error": "created must be 'current', 'any', 'none' or a registered 'created'"}
        return 200, self.ring.query(sandbox, since, limit, after=after, created=created)

    async def _register(self, name: str, body: Any) -> tuple[int, Any]:
        try:
            entry = entry_from_dict(name, body)
        except RegistryError as exc:
            return 400, {"error": str(exc)}
        others = [e for e in self.proc.state.registry.entries() if e.name != name]
        errors = await self._apply([*others, entry], reopen=name)
        if name in errors:
            await self._apply(others)
            return 400, {"error": errors[name]}
        return 200, self.sandbox_status(name)

    async def _unregister(self, name: str, created: str | None) -> tuple[int, Any]:
        entry = self.proc.state.registry.get(name)
        if created and entry is not None and entry.created is not None:
            try:
                stale = float(created) != entry.created
            except ValueError:
                return 400, {"error": "created must be the number the sandbox was registered with"}
            if stale:  # a late unregister of an earlier sandbox of this name: keep the newer one
                return 409, {"error": f"sandbox {name!r} was registered again (created {entry.created}); "
                                      f"the one created {created} is already gone", "unregistered": False}
        await self._apply([e for e in self.proc.state.registry.entries() if e.name != name])
        return (200 if entry is not None else 404), {"name": name, "unregistered": entry is not None}

    def sandbox_status(self, name: str) -> dict[str, Any]:
        entry = self.proc.state.registry.get(name)
        assert entry is not None and self.gateway is not None
        pol = self.proc.policy_status().get(name, {})
        return {"name": name, "created": entry.created, "socket": self.gateway.listening().get(name),
                "channel": entry.kind, "source": entry.source,
                "policy_file": str(entry.policy_file), "policy_version": pol.get("version"),
                "policy_error": pol.get("last_error")}

    async def status(self) -> dict[str, Any]:
        """Process, policies, sandboxes; with workers, each process's policy versions
        (`worker_policies`, index 0 = this primary) and whether they all agree (`policies_agree`)."""
        policies = self.proc.policy_status()
        per_worker = [{"index": 0, "pid": os.getpid(), "policies": self.proc.policy_versions()}]
        for index, answer in enumerate(await self._tell_workers({"op": "status"}, 2), start=1):
            per_worker.append({"index": index, "pid": answer.get("pid"), "policies": answer.get("policies"),
                               "error": answer.get("error")})
        for name, st in policies.items():
            st["worker_versions"] = [(w["policies"] or {}).get(name) for w in per_worker]
        agree = all(len(set(st["worker_versions"])) == 1 for st in policies.values()) and all(
            w["policies"] is not None and set(w["policies"]) == set(policies) for w in per_worker)
        return {**self.info, "uptime_s": round(time.time() - self.proc.started, 3),
                "policies": policies, "worker_policies": per_worker, "policies_agree": agree,
                "sandboxes": {n: self.sandbox_status(n) for n in self.proc.state.registry.names()},
                "flow_log": str(self.proc.state.flowlog.path),
                "resolver_lookups": self.proc.state.resolver.lookups,
                "kubernetes": self.kube.status() if self.kube else None}


async def run_worker(cfg: ProxyConfig) -> int:
    proc = ProxyProcess(cfg)
    proc.apply_registered(_load_registered(cfg.state_dir))
    await proc.start_master()
    assert proc.master is not None
    run_task = asyncio.ensure_future(proc.master.run())
    await proc.wait_listening()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout

    def answer(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    if cfg.channel_fd is not None:
        channel = socket.socket(fileno=cfg.channel_fd)
        channel.setblocking(False)
        loop.add_reader(channel.fileno(), _receive_channel_connections, proc, channel)
    answer({"ready": True, "pid": os.getpid()})

    async def commands() -> None:
        while line := await reader.readline():
            cmd = json.loads(line)
            seq = cmd.get("seq")
            if cmd.get("op") == "registered":
                answer({"seq": seq, "errors": proc.apply_registered(_entries(cmd["entries"]))})
            elif cmd.get("op") == "reload":
                answer({"seq": seq, "changed": proc.state.policies.refresh(force=True)})
            elif cmd.get("op") == "status":
                answer({"seq": seq, "pid": os.getpid(), "policies": proc.policy_versions()})
            else:
                answer({"seq": seq, "error": f"unknown op {cmd.get('op')!r}"})
        proc.master.shutdown()  # the primary went away

    cmd_task = asyncio.ensure_future(commands())
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, proc.master.shutdown)
    try:
        await run_task
    finally:
        cmd_task.cancel()
    return 0


def _receive_channel_connections(proc: ProxyProcess, channel: socket.socket) -> None:
    """A worker: serve the sandbox connections the primary passed, each with its sandbox's name; one
    whose registration this worker does not hold (anymore) is closed unserved."""
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(channel, 4096, 4)
        except (BlockingIOError, InterruptedError):
            return
        if not message and not fds:  # the primary went away
            asyncio.get_running_loop().remove_reader(channel.fileno())
            return
        conns = [socket.socket(fileno=fd) for fd in fds]
        try:
            sent = json.loads(message)
            entry = proc.state.registry.get(sent["name"])
        except (ValueError, KeyError, TypeError):
            entry = None
        if entry is None or len(conns) != 1 or entry.created != sent.get("created"):
            for conn in conns:
                conn.close()
            continue
        assert proc.master is not None
        _handoff.start(proc.master, proc.state, entry, conns[0])


async def _answers(path: Path) -> bool:
    """True if something accepts connections on the UNIX socket `path`."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 2)
    except (TimeoutError, OSError):
        return False
    writer.close()
    return True


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host or "127.0.0.1", 0))
        return s.getsockname()[1]


def serve(cfg: ProxyConfig) -> int:
    """Run the proxy until SIGTERM/SIGINT or POST /shutdown."""
    if cfg.worker_index:
        return asyncio.run(run_worker(cfg))
    return asyncio.run(Primary(cfg).run())
