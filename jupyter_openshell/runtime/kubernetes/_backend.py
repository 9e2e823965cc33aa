"""The Kubernetes backend: one pod per sandbox, its only way out the in-cluster policy proxy.

`create`: the policy is validated and stored (as locally: `policies/<name>.yaml`, with history), then a
Secret (the sandbox's credential), a ConfigMap (its policy and the credential's SHA-256) and the Pod
(`_manifests`, checked by `_invariants` first) are created, all owned by this server's anchor; once the
pod is Running its IP is written into the ConfigMap, which is when the proxy starts to recognise it
(credential AND source address, `proxy/addons/identity.py`). Any failure removes what was made and says
why (403, 409, an image that cannot be pulled, a pod that is not scheduled in time, with its events).
`exec`: the exec API carrying `_launcher`'s protocol (`_exec.PodProcess`). `set_policy`: validated, stored,
then the ConfigMap is patched: the proxy's watch applies it to the next request. `stop` deletes the pod
(the ConfigMap and Secret stay; the source address is cleared, so a reused pod IP is never the
sandbox's); `destroy` deletes all three and waits for the pod to be gone. `list` re-attaches: pods of
this server (labels) without a record get one again (a restarted server, a lost state file).
Records: `<state>/sandboxes/<name>/sandbox.json` with "backend": "kubernetes". It must never create a pod
that fails the invariants, and never leave objects of a failed create behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ... import paths
from .. import _links, _state
from .._types import Backend, KernelChannel, SandboxError, SandboxInfo, SandboxSpec, check_name
from . import _client, _invariants, _manifests, _settings
from ._exec import COMMAND, PodProcess, WebSocketChannels

WAITING_FATAL = (
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "CrashLoopBackOff",
    "RunContainerError",
)
NOFILE = 4096


class KubernetesBackend(Backend):
    name = "kubernetes"
    host_paths = False

    def __init__(self, settings: _settings.KubeSettings | None = None):
        self._settings = settings
        self._api: Any = None

    # --- plumbing -----------------------------------------------------------------------------------------
    @property
    def settings(self) -> _settings.KubeSettings:
        if self._settings is None:
            try:
                self._settings = _settings.load()
            except _settings.SettingsError as exc:
                raise SandboxError(str(exc)) from None
        elif not self._settings.server_id:
            self._settings = self._settings.with_changes(server_id=_settings.load().server_id)
        return self._settings

    def core(self) -> Any:
        if self._api is None:
            from kubernetes import client

            self._api = client.CoreV1Api(_client.api_client(self.settings))
        return self._api

    def _call(self, what: str, fn: Any, *args: Any, missing_ok: bool = False, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            if missing_ok and exc.status == 404:
                return None
            raise _client.explain(exc, what, self.settings) from None
        except (HTTPError, OSError) as exc:
            raise _client.explain(exc, what, self.settings) from None

    def _record(self, name: str) -> dict:
        record = _state.read(check_name(name))
        if record is None or record.get("backend") != self.name:
            raise SandboxError(
                f"no sandbox named {name} on the kubernetes backend; `openshell sandbox ls` lists them"
            )
        return record

    # --- create -------------------------------------------------------------------------------------------
    def create(self, spec: SandboxSpec) -> SandboxInfo:
        name = check_name(spec.name or f"sb-{secrets.token_hex(4)}")
        s = self.settings
        text, policy = _links.policy_of(spec)
        if spec.workspace or spec.binds:
            raise SandboxError(
                "the kubernetes backend cannot mount host paths into a pod (--workspace, binds): "
                "its workspace is the pod's own volume; copy files in with `openshell sandbox "
                "exec NAME -- sh -c 'cat > FILE' < FILE`"
            )
        limits = _links.limits(policy)
        gpu = bool(policy.gpu if spec.gpu is None else spec.gpu)
        with _state.locked():
            existing = _state.read(name)
            if existing is not None:
                raise SandboxError(
                    f"sandbox {name} already exists ({existing.get('backend', 'local')} backend); "
                    f"pick another --name or remove it with `openshell sandbox rm {name}`"
                )
            paths.ensure_private_dir(_state.directory(name))
            instance = secrets.token_hex(4)
            record = {
                "name": name,
                "backend": self.name,
                "state": "creating",
                "created": _state.now(),
                "policy_file": str(_links.policy_path(name)),
                "namespace": s.namespace,
                "instance": instance,
                "pod": _manifests.object_name(name, instance),
                "server": s.server_id,
                "image": spec.image or s.image,
                "limits": limits.to_dict(),
                "gpu": gpu,
            }
            _state.write(record)
        try:
            _links.store(name, text)
            return self._start(record, text, limits, gpu, dict(spec.env))
        except BaseException:
            self._remove(record, wait=False)
            raise

    def _start(self, record: dict, text: str, limits: Any, gpu: bool, env: dict[str, str]) -> SandboxInfo:
        s, core, pod_name = self.settings, self.core(), record["pod"]
        service = self._call(
            f"read service {s.proxy_service}", core.read_namespaced_service, s.proxy_service, s.namespace
        )
        proxy = f"{service.spec.cluster_ip}:{service.spec.ports[0].port}"
        owner = _manifests.owner_reference(self._anchor())
        token = secrets.token_urlsafe(32)
        objects = _manifests.sandbox_objects(
            s,
            name=record["name"],
            instance=record["instance"],
            created=record["created"],
            policy_text=text,
            token=token,
            limits=limits,
            gpu=gpu,
            proxy=proxy,
            owner=owner,
        )
        secret, config, pod = objects
        pod["spec"]["containers"][0]["image"] = record["image"]
        if env:
            pod["spec"]["containers"][0]["env"] += [{"name": k, "value": v} for k, v in env.items()]
        violations = _invariants.check([*objects, _manifests.sandbox_network_policy(s)])
        if violations:
            raise SandboxError(
                "refusing to create a pod that breaks the sandbox invariants:\n  " + "\n  ".join(violations)
            )
        ns = s.namespace
        self._call(f"create secret {secret['metadata']['name']}", core.create_namespaced_secret, ns, secret)
        self._call(
            f"create configmap {config['metadata']['name']}", core.create_namespaced_config_map, ns, config
        )
        self._call(f"create pod {pod_name}", core.create_namespaced_pod, ns, pod)
        ip = self._wait_running(record["name"], pod_name)
        self._call(
            f"patch configmap {config['metadata']['name']}",
            core.patch_namespaced_config_map,
            config["metadata"]["name"],
            ns,
            {"data": {"source": ip}},
        )
        record.update(
            state="running",
            pod_ip=ip,
            proxy=proxy,
            config_map=config["metadata"]["name"],
            secret=secret["metadata"]["name"],
        )
        _state.write(record)
        return self._info(record, "Running")

    def _anchor(self) -> dict:
        """This server's anchor ConfigMap (made on first use; in the cluster, owned by the server's pod)."""
        s, core = self.settings, self.core()
        name = _manifests.anchor_name(s.server_id)
        found = self._call(
            f"read configmap {name}", core.read_namespaced_config_map, name, s.namespace, missing_ok=True
        )
        if found is None:
            pod = (
                (os.environ["OPENSHELL_K8S_POD_NAME"], os.environ["OPENSHELL_K8S_POD_UID"])
                if os.environ.get("OPENSHELL_K8S_POD_UID") and os.environ.get("OPENSHELL_K8S_POD_NAME")
                else None
            )
            obj = _manifests.anchor(s, socket.gethostname(), pod)
            from kubernetes.client.exceptions import ApiException

            try:
                found = core.create_namespaced_config_map(s.namespace, obj)
            except ApiException as exc:
                if exc.status != 409:  # (another process of this server made it meanwhile)
                    raise _client.explain(exc, f"create configmap {name}", s) from None
                found = self._call(
                    f"read configmap {name}", core.read_namespaced_config_map, name, s.namespace
                )
        return {"metadata": {"name": found.metadata.name, "uid": found.metadata.uid}}

    def _wait_running(self, name: str, pod_name: str) -> str:
        """The pod's IP once it is Running and its container ready; SandboxError (with the pod's events)
        if it fails or is not Running within the start timeout."""
        s, core = self.settings, self.core()
        deadline = time.monotonic() + s.start_timeout
        delay = 0.02
        while True:
            pod = self._call(f"read pod {pod_name}", core.read_namespaced_pod, pod_name, s.namespace)
            status = pod.status
            ready = all(c.ready for c in status.container_statuses or []) and status.container_statuses
            if status.phase == "Running" and ready and status.pod_ip:
                return status.pod_ip
            if status.phase in ("Failed", "Succeeded"):
                raise SandboxError(
                    f"sandbox {name}: pod {pod_name} ended ({status.phase}) while starting: "
                    f"{status.message or status.reason or ''}{self._events(pod_name)}"
                )
            for c in status.container_statuses or []:
                waiting = c.state.waiting if c.state else None
                if waiting is not None and waiting.reason in WAITING_FATAL:
                    pod_image = pod.spec.containers[0].image
                    hint = (
                        " — the image is not on the node: `openshell cluster up` imports the default one; "
                        f"else push {pod_image} to a registry the cluster pulls from"
                        if "Image" in waiting.reason
                        else ""
                    )
                    raise SandboxError(
                        f"sandbox {name}: pod {pod_name} cannot start: {waiting.reason}: "
                        f"{waiting.message or ''}{hint}{self._events(pod_name)}"
                    )
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"sandbox {name}: pod {pod_name} was not Running within {s.start_timeout:.0f} s (phase "
                    f"{status.phase}){self._events(pod_name)}; raise OPENSHELL_K8S_START_TIMEOUT if the "
                    "cluster is slow to pull images or schedule"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _events(self, pod_name: str) -> str:
        try:
            events = (
                self.core()
                .list_namespaced_event(
                    self.settings.namespace, field_selector=f"involvedObject.name={pod_name}"
                )
                .items
            )
        except Exception:  # (events only decorate an error)
            return ""
        lines = [f"\n  {e.type or ''} {e.reason or ''}: {e.message or ''}" for e in events[-8:]]
        return "\n pod events:" + "".join(lines) if lines else ""

    # --- exec ---------------------------------------------------------------------------------------------
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
    ) -> PodProcess:
        record = self._record(name)
        if not argv:
            raise SandboxError("exec needs a command, e.g. `openshell sandbox exec NAME -- python -V`")
        if record.get("state") != "running":
            raise SandboxError(f"sandbox {name} is {record.get('state')}; create it again to run commands")
        from kubernetes.stream import stream

        s, core = self.settings, self.core()
        ws = self._call(
            f"exec in pod {record['pod']}",
            stream,
            core.connect_get_namespaced_pod_exec,
            record["pod"],
            s.namespace,
            container="sandbox",
            command=COMMAND,
            stdin=True,
            stdout=True,
            stderr=True,
            tty=False,
            _preload_content=False,
            binary=True,
        )
        rlimits = {"nofile": NOFILE}
        if (record.get("limits") or {}).get("disk"):
            rlimits["fsize"] = int(record["limits"]["disk"])
        return PodProcess(
            WebSocketChannels(ws),
            argv,
            env=env,
            cwd=cwd,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            sandbox=name,
            rlimits=rlimits,
        )

    def kernel_channel(self, name: str) -> KernelChannel:
        """TCP on the pod's own address (`_kernel_channel`): every pod can run kernels."""
        from ._kernel_channel import TcpKernelChannel

        return TcpKernelChannel(self._record(name)["pod_ip"])

    # --- lifecycle ----------------------------------------------------------------------------------------
    def _delete(self, kind: str, name: str, wait: bool = False) -> None:
        core, ns = self.core(), self.settings.namespace
        fn = {
            "pod": core.delete_namespaced_pod,
            "configmap": core.delete_namespaced_config_map,
            "secret": core.delete_namespaced_secret,
        }[kind]
        self._call(
            f"delete {kind} {name}",
            fn,
            name,
            ns,
            missing_ok=True,
            grace_period_seconds=0 if kind == "pod" else None,
        )
        deadline = time.monotonic() + 30
        while wait and time.monotonic() < deadline:
            if self._call(f"read pod {name}", core.read_namespaced_pod, name, ns, missing_ok=True) is None:
                return
            time.sleep(0.1)

    def _remove(self, record: dict, wait: bool = True) -> None:
        errors = []
        base = record.get("pod") or _manifests.object_name(record["name"], record.get("instance", ""))
        for kind, obj in (("pod", base), ("configmap", f"{base}-policy"), ("secret", f"{base}-token")):
            try:
                self._delete(kind, obj, wait=wait and kind == "pod")
            except SandboxError as exc:
                errors.append(str(exc))
        shutil.rmtree(_state.directory(record["name"]), ignore_errors=True)
        if errors:
            raise SandboxError("\n".join(errors))

    def stop(self, name: str) -> SandboxInfo:
        record = self._record(name)
        if record.get("config_map"):
            self._call(
                f"patch configmap {record['config_map']}",
                self.core().patch_namespaced_config_map,
                record["config_map"],
                self.settings.namespace,
                {"data": {"source": None}},
                missing_ok=True,
            )
        self._delete("pod", record["pod"], wait=True)
        record["state"] = "stopped"
        _state.write(record)
        return self._info(record, None)

    def destroy(self, name: str) -> None:
        self._remove(self._record(name))

    def _phase(self, record: dict) -> str | None:
        pod = self._call(
            f"read pod {record['pod']}",
            self.core().read_namespaced_pod,
            record["pod"],
            self.settings.namespace,
            missing_ok=True,
        )
        return pod.status.phase if pod is not None else None

    def status(self, name: str) -> SandboxInfo:
        record = self._record(name)
        return self._info(record, self._phase(record))

    def list(self) -> list[SandboxInfo]:
        self._reattach()
        out = []
        for name in _state.names():
            record = _state.read(name) or {}
            if record.get("backend") == self.name:
                out.append(self._info(record, self._phase(record)))
        return out

    def _reattach(self) -> list[str]:
        """Records again for this server's pods that have none (a lost state file, another machine)."""
        s, core = self.settings, self.core()
        selector = f"{_manifests.OWNER}={s.server_id},{_manifests.ROLE}=sandbox"
        pods = self._call("list pods", core.list_namespaced_pod, s.namespace, label_selector=selector).items
        found = []
        for pod in pods:
            labels = pod.metadata.labels or {}
            name = labels.get(_manifests.SANDBOX, "")
            with _state.locked():
                if not name or _state.read(name) is not None:
                    continue
                config = self._call(
                    "read configmap",
                    core.read_namespaced_config_map,
                    f"{pod.metadata.name}-policy",
                    s.namespace,
                    missing_ok=True,
                )
                data = (config.data if config is not None else None) or {}
                paths.ensure_private_dir(_state.directory(name))
                record = {
                    "name": name,
                    "backend": self.name,
                    "state": "running" if pod.status.pod_ip else "creating",
                    "created": float(data.get("created") or 0),
                    "policy_file": str(_links.policy_path(name)),
                    "namespace": s.namespace,
                    "instance": labels.get(_manifests.INSTANCE, ""),
                    "pod": pod.metadata.name,
                    "server": s.server_id,
                    "image": pod.spec.containers[0].image,
                    "pod_ip": pod.status.pod_ip,
                    "config_map": f"{pod.metadata.name}-policy",
                    "secret": f"{pod.metadata.name}-token",
                    "reattached": True,
                }
                _state.write(record)
            if data.get("policy.yaml") and not _links.policy_path(name).exists():
                with contextlib.suppress(SandboxError):
                    _links.store(name, data["policy.yaml"])
            found.append(name)
        return found

    def cleanup(self) -> list[str]:
        """Pods of this server that ended (Failed/Succeeded, e.g. past activeDeadlineSeconds) and objects of
        this server that no record names (a crashed create) are deleted; returns what was cleaned."""
        s, core = self.settings, self.core()
        cleaned = []
        for name in _state.names():
            record = _state.read(name) or {}
            if record.get("backend") == self.name and self._phase(record) in ("Failed", "Succeeded"):
                self._remove(record)
                cleaned.append(name)
        known = {(_state.read(n) or {}).get("pod") for n in _state.names()}
        selector = f"{_manifests.OWNER}={s.server_id}"
        for kind, lister in (
            ("pod", core.list_namespaced_pod),
            ("configmap", core.list_namespaced_config_map),
            ("secret", core.list_namespaced_secret),
        ):
            for obj in self._call(f"list {kind}s", lister, s.namespace, label_selector=selector).items:
                labels = obj.metadata.labels or {}
                if labels.get(_manifests.ROLE) == "anchor":
                    continue
                base = _manifests.object_name(
                    labels.get(_manifests.SANDBOX, ""), labels.get(_manifests.INSTANCE, "")
                )
                if base not in known:
                    self._delete(kind, obj.metadata.name)
                    cleaned.append(f"{kind}/{obj.metadata.name}")
        return cleaned

    def _info(self, record: dict, phase: str | None) -> SandboxInfo:
        state = record.get("state", "exited")
        if state == "running" and phase != "Running":
            state = "exited"
        limits = record.get("limits") or {}
        return SandboxInfo(
            name=record["name"],
            state=state,
            backend=self.name,
            address=record.get("pod_ip") or "",
            workspace=f"pod {record.get('pod')}:/workspace (emptyDir)",
            policy_file=record.get("policy_file", ""),
            created=record.get("created", 0.0),
            enforcement=self._layers(),
            limits=limits,
            gpu=bool(record.get("gpu")),
            image=record.get("image"),
            details={
                "pod_uid": _settings.SANDBOX_UID,
                "namespace": record.get("namespace"),
                "pod": record.get("pod"),
                "phase": phase,
                "proxy": record.get("proxy"),
                "reattached": bool(record.get("reattached")),
                "resources": _resources_note(limits),
            },
        )

    def _layers(self) -> dict[str, str]:
        """Each wall of a pod sandbox and what makes it (`SandboxInfo.enforcement`)."""
        s = self.settings
        return {
            "network": "NetworkPolicy: out only through the in-cluster proxy (credential + pod IP)",
            "filesystem": "readOnlyRootFilesystem; writable /workspace and /tmp (emptyDir)",
            "syscalls": f"seccomp {s.seccomp}"
            + (" (the local backend's rules)" if s.seccomp == "Localhost" else "")
            + ", allowPrivilegeEscalation false",
            "user": f"uid {_settings.SANDBOX_UID} (runAsNonRoot), all capabilities dropped"
            + (f", runtimeClass {s.runtime_class}" if s.runtime_class else ""),
            "resources": "kubelet (cgroups)",
        }

    # --- policy and logs ----------------------------------------------------------------------------------
    def set_policy(self, name: str, text: str) -> Any:
        record = self._record(name)
        policy = _links.store(name, text)
        self._call(
            f"patch configmap {record.get('config_map')}",
            self.core().patch_namespaced_config_map,
            record.get("config_map") or f"{record['pod']}-policy",
            self.settings.namespace,
            {"data": {"policy.yaml": text}},
        )
        return policy

    def get_policy(self, name: str) -> str:
        record = self._record(name)
        try:
            return Path(record.get("policy_file") or _links.policy_path(name)).read_text()
        except OSError as exc:
            raise SandboxError(f"sandbox {name} has no policy file: {exc.strerror}") from exc

    def logs(self, name: str) -> str:
        record = self._record(name)
        text = (
            self._call(
                f"read log of pod {record['pod']}",
                self.core().read_namespaced_pod_log,
                record["pod"],
                self.settings.namespace,
                missing_ok=True,
            )
            or ""
        )
        return str(text) + self._events(record["pod"]).lstrip("\n")


def _resources_note(limits: dict) -> dict:
    by = {
        "cpu": "kubelet (cgroups: resources.limits.cpu)",
        "memory": "kubelet (cgroups: resources.limits.memory)",
        "disk": "emptyDir sizeLimit of /tmp (memory-backed) + RLIMIT_FSIZE per exec",
        "timeout": "activeDeadlineSeconds",
        "pids": "none per pod (the node's podPidsLimit)",
    }
    return {k: {"limit": limits.get(k), "by": by[k], "note": ""} for k in by}
