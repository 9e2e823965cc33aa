"""The proxy's Kubernetes source (`openshell proxy --kube-namespace NS`, in the primary process): watches the
namespace's sandbox ConfigMaps (label `openshell.io/role=sandbox-policy`, written by the Kubernetes
backend) and turns each into a registration with channel kind "token" plus a policy file.

Per ConfigMap (data: `policy.yaml`, `token_sha256`, `source` = the pod's IP once it runs, `created`,
`sandbox`): the policy is written atomically to `<state>/kube/<pod name>.yaml` when its text changed, so the
policy watcher applies it with the usual semantics (a valid new version replaces the old one for the next
request; an invalid one changes nothing and is reported in `status()` as the policy's `last_error`; a
sandbox whose first policy is invalid is denied everything). The registration's name is the pod's (unique
per instance, whichever server made it). A ConfigMap without a source (pod not running, or stopped) or
with an invalid field registers nothing (reported in `status()["kubernetes"]`); a deleted one is
unregistered. The watch runs in a thread with the Kubernetes client (list, then watch from its
resourceVersion; a 410 Gone lists again; errors are retried with backoff and reported); every change is
applied in the event loop through `apply(entries)`. It must never register a ConfigMap without its
credential hash and source, and never read a Secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ._registry import RegistryError, SandboxEntry, entry_from_dict

log = logging.getLogger(__name__)
SELECTOR = "openshell.io/role=sandbox-policy"
SUFFIX = "-policy"
Apply = Callable[[list[SandboxEntry]], Awaitable[dict[str, str]]]


def _api(kubeconfig: str | None) -> Any:
    from kubernetes import client, config

    cfg = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    else:
        config.load_incluster_config(client_configuration=cfg)
    return client.CoreV1Api(client.ApiClient(cfg))


def _write_atomic(path: Path, text: str) -> bool:
    """Replace `path` with `text` (0600) unless it holds it already; True if written."""
    try:
        if path.read_text() == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return True


class KubeSource:
    def __init__(self, namespace: str, state_dir: Path, apply: Apply, kubeconfig: str | None = None,
                 resync: float = 300.0):
        self.namespace, self.kubeconfig, self.apply, self.resync = namespace, kubeconfig, apply, resync
        self.directory = state_dir / "kube"
        self.directory.mkdir(mode=0o700, exist_ok=True)
        self._maps: dict[str, dict[str, str]] = {}  # ConfigMap name -> data
        self._problems: dict[str, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._lock = asyncio.Lock()
        self.connected = False
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.events = 0

    # -- the watch thread -----------------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._run, name="openshell-kube-source", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _post(self, kind: str, payload: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closing
            asyncio.run_coroutine_threadsafe(self._handle(kind, payload), self._loop)

    def _error(self, message: str) -> None:
        self.connected = False
        if message != self.last_error:
            log.error("kubernetes source (namespace %s): %s", self.namespace, message)
        self.last_error, self.last_error_at = message, time.time()

    def _run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        delay = 0.2
        api = None
        version = None
        while not self._stop.is_set():
            try:
                api = api or _api(self.kubeconfig)
                if version is None:
                    listed = api.list_namespaced_config_map(self.namespace, label_selector=SELECTOR)
                    self._post("sync", {cm.metadata.name: dict(cm.data or {}) for cm in listed.items})
                    version = listed.metadata.resource_version
                self.connected, delay = True, 0.2
                for event in watch.Watch().stream(api.list_namespaced_config_map, self.namespace,
                                                  label_selector=SELECTOR, resource_version=version,
                                                  timeout_seconds=int(self.resync)):
                    obj = event["object"]
                    version = obj.metadata.resource_version
                    self._post(event["type"], (obj.metadata.name, dict(obj.data or {})))
                    if self._stop.is_set():
                        return
            except ApiException as exc:
                if exc.status == 410:  # our resourceVersion is too old: list again
                    version = None
                    continue
                self._error(f"the API server answered {exc.status}: {exc.reason}")
            except Exception as exc:  # keep watching whatever happens (reported in status)
                self._error(f"{type(exc).__name__}: {exc}")
                api = None if not self.connected else api
            self._stop.wait(delay)
            delay = min(delay * 2, 10.0)

    # -- in the event loop ----------------------------------------------------------------------------
    async def _handle(self, kind: str, payload: Any) -> None:
        async with self._lock:
            self.events += 1
            if kind == "sync":
                self._maps = payload
            elif kind == "DELETED":
                self._maps.pop(payload[0], None)
            elif kind in ("ADDED", "MODIFIED"):
                self._maps[payload[0]] = payload[1]
            else:
                return
            errors = await self.apply(self._entries())
            self._problems.update({f"{n}{SUFFIX}": f"not registered: {e}" for n, e in errors.items()})

    def _entries(self) -> list[SandboxEntry]:
        entries, problems, keep = [], {}, set()
        for cm, data in sorted(self._maps.items()):
            name = cm.removesuffix(SUFFIX)
            if not data.get("source"):
                problems[cm] = "pending: no source address yet (the pod is not running)"
                continue
            path = self.directory / f"{name}.yaml"
            keep.add(path.name)
            try:
                _write_atomic(path, data.get("policy.yaml", ""))
                entries.append(entry_from_dict(name, {
                    "created": float(data["created"]) if data.get("created") else None,
                    "policy_file": str(path),
                    "channel": {"kind": "token", "token_sha256": data.get("token_sha256"),
                                "source": data.get("source")}}))
            except (RegistryError, ValueError, OSError) as exc:
                problems[cm] = f"not registered: {exc}"
        for stale in self.directory.glob("*.yaml"):
            if stale.name not in keep:
                with contextlib.suppress(OSError):
                    stale.unlink()
        self._problems = problems
        return entries

    def names(self) -> set[str]:
        return {cm.removesuffix(SUFFIX) for cm in self._maps}

    def status(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "connected": self.connected, "last_error": self.last_error,
                "last_error_at": self.last_error_at, "events": self.events, "configmaps": len(self._maps),
                "problems": dict(self._problems)}
