"""The security invariants of the rendered objects, checked on the result (not on the renderer's
constants, so a renderer that loses one is caught): `check(objects) -> [violation, ...]`.

Sandbox pods: explicit no service-account token, no service links, no host network/PID/IPC, no shared
process namespace; non-root (pod and container level both: either alone is one edit from root); every
container without privilege escalation, privileges or capabilities, with a read-only root filesystem and
a RuntimeDefault or Localhost seccomp profile; no hostPath volume, no host port; writable mounts only the
workspace and a memory-backed, size-limited /tmp; CPU and memory limits; the only Secret the pod's own
credential; the sandboxes' ServiceAccount without token and bound to nothing. The NetworkPolicy of
sandbox pods: both directions, egress only TCP to the proxy pods' port, ingress only from selected pods
to the kernel ports. Key and CA Secrets: only the proxy's pod. The proxy's Role: read only (the server's
Role may write: it makes sandboxes). `openshell k8s install` and the backend refuse objects with a
violation. It must never change the objects it checks.
"""

from __future__ import annotations

from typing import Any

from . import _manifests as m
from ._settings import KERNEL_PORTS, PROXY_PORT

REQUIRED_FALSE = (
    "automountServiceAccountToken",
    "enableServiceLinks",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "shareProcessNamespace",
)
PROXY_ONLY_SECRETS = (m.KEYS_SECRET, m.CA_SECRET)
READ_VERBS = {"get", "list", "watch"}


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return obj.get("metadata", {}).get("labels") or {}


def _name(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    match = (selector or {}).get("matchLabels") or {}
    return not (selector or {}).get("matchExpressions") and all(labels.get(k) == v for k, v in match.items())


def _pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any], dict[str, str]]]:
    """(what, role, pod spec, pod labels) of every Pod and Deployment template."""
    out = []
    for obj in objects:
        if obj.get("kind") == "Pod":
            out.append((_name(obj), _labels(obj).get(m.ROLE, ""), obj.get("spec") or {}, _labels(obj)))
        elif obj.get("kind") == "Deployment":
            template = (obj.get("spec") or {}).get("template") or {}
            labels = (template.get("metadata") or {}).get("labels") or {}
            out.append((_name(obj), labels.get(m.ROLE, ""), template.get("spec") or {}, labels))
    return out


def _secrets_used(spec: dict[str, Any]) -> set[str]:
    used = set()
    for vol in spec.get("volumes") or []:
        if "secret" in vol:
            used.add(vol["secret"].get("secretName"))
        for src in (vol.get("projected") or {}).get("sources") or []:
            if "secret" in src:
                used.add(src["secret"].get("name"))
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        for env in c.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                used.add(ref.get("name"))
        for env_from in c.get("envFrom") or []:
            if "secretRef" in env_from:
                used.add(env_from["secretRef"].get("name"))
    return used


def _check_pod(what: str, spec: dict[str, Any], sandbox: bool) -> list[str]:
    bad = []
    pod_sc = spec.get("securityContext") or {}
    if sandbox:
        bad += [
            f"{what}: spec.{k} must be false (explicitly)" for k in REQUIRED_FALSE if spec.get(k) is not False
        ]
    else:
        bad += [
            f"{what}: spec.{k} must not be true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k)
        ]
        if spec.get("enableServiceLinks") is not False:
            bad.append(f"{what}: spec.enableServiceLinks must be false")
    if pod_sc.get("runAsNonRoot") is not True:
        bad.append(f"{what}: spec.securityContext.runAsNonRoot must be true")
    if not isinstance(pod_sc.get("runAsUser"), int) or pod_sc["runAsUser"] <= 0:
        bad.append(f"{what}: spec.securityContext.runAsUser must be a fixed non-root uid")
    for vol in spec.get("volumes") or []:
        if "hostPath" in vol:
            bad.append(f"{what}: volume {vol.get('name')} is a hostPath")
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        sc = c.get("securityContext") or {}
        where = f"{what} container {c.get('name')}"
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{where}: allowPrivilegeEscalation must be false")
        if sc.get("privileged") is not False:
            bad.append(f"{where}: privileged must be false (explicitly)")
        if sc.get("readOnlyRootFilesystem") is not True:
            bad.append(f"{where}: readOnlyRootFilesystem must be true")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []) or caps.get("add"):
            bad.append(f"{where}: capabilities must drop ALL and add none")
        if sc.get("runAsNonRoot") is not True:  # (both levels: either alone is one edit from root)
            bad.append(f"{where}: runAsNonRoot must be true")
        uid = sc.get("runAsUser")
        if not isinstance(uid, int) or uid <= 0:
            bad.append(f"{where}: runAsUser must be a fixed non-root uid, got {uid!r}")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{where}: seccompProfile must be RuntimeDefault or Localhost, got {seccomp!r}")
        if any("hostPort" in p or "hostIP" in p for p in c.get("ports") or []):
            bad.append(f"{where}: a host port")
    return bad


def _check_sandbox_pod(what: str, spec: dict[str, Any], pod_name: str) -> list[str]:
    bad = []
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    allowed = {"emptyDir", "projected", "persistentVolumeClaim"}
    for name, vol in volumes.items():
        kinds = set(vol) - {"name"}
        if not kinds <= allowed:
            bad.append(f"{what}: volume {name} is {sorted(kinds)} (allowed: {sorted(allowed)})")
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        for mount in c.get("volumeMounts") or []:
            if mount.get("readOnly"):
                continue
            if mount.get("mountPath") not in (m.WORKSPACE, "/tmp"):
                bad.append(f"{what}: writable mount {mount.get('mountPath')} (only {m.WORKSPACE} and /tmp)")
            elif mount.get("mountPath") == "/tmp":
                empty = (volumes.get(mount.get("name")) or {}).get("emptyDir")
                if not empty or empty.get("medium") != "Memory" or not empty.get("sizeLimit"):
                    bad.append(f"{what}: /tmp must be an emptyDir of medium Memory with a sizeLimit")
        limits = (c.get("resources") or {}).get("limits") or {}
        if not limits.get("memory") or not limits.get("cpu"):
            bad.append(f"{what} container {c.get('name')}: CPU and memory limits are required")
    secrets = _secrets_used(spec)
    if secrets - {f"{pod_name}-token"}:
        bad.append(
            f"{what}: Secrets other than its own credential: {sorted(secrets - {f'{pod_name}-token'})}"
        )
    if spec.get("serviceAccountName") != m.SANDBOX_SA:
        bad.append(f"{what}: serviceAccountName must be {m.SANDBOX_SA}")
    return bad


def _check_network(objects: list[dict[str, Any]], sandbox_labels: list[dict[str, str]]) -> list[str]:
    bad = []
    for labels in sandbox_labels:
        policies = [
            o
            for o in objects
            if o.get("kind") == "NetworkPolicy"
            and _selects((o.get("spec") or {}).get("podSelector") or {}, labels)
        ]
        if not policies:
            bad.append(f"no NetworkPolicy selects sandbox pods {labels}")
        for pol in policies:
            spec = pol.get("spec") or {}
            what = _name(pol)
            if not {"Ingress", "Egress"} <= set(spec.get("policyTypes") or []):
                bad.append(f"{what}: policyTypes must include Ingress and Egress (default deny both ways)")
            for rule in spec.get("egress") or []:
                peers, ports = rule.get("to") or [], rule.get("ports") or []
                if not peers or not ports:
                    bad.append(f"{what}: an egress rule without peers or ports allows too much")
                for peer in peers:
                    if (
                        set(peer) != {"podSelector"}
                        or (peer["podSelector"] or {}).get("matchLabels") != m.proxy_selector()
                    ):
                        bad.append(f"{what}: egress to {peer} (only the proxy pods)")
                for port in ports:
                    if (
                        port.get("protocol", "TCP") != "TCP"
                        or port.get("port") != PROXY_PORT
                        or "endPort" in port
                    ):
                        bad.append(f"{what}: egress port {port} (only TCP {PROXY_PORT})")
            for rule in spec.get("ingress") or []:
                peers, ports = rule.get("from") or [], rule.get("ports") or []
                if (
                    not peers
                    or not ports
                    or any(
                        set(p) != {"podSelector"} or not (p["podSelector"] or {}).get("matchLabels")
                        for p in peers
                    )
                ):
                    bad.append(f"{what}: ingress must come from selected pods only, to the kernel ports")
                for port in ports:
                    if (
                        port.get("protocol", "TCP") != "TCP"
                        or port.get("port") != KERNEL_PORTS[0]
                        or port.get("endPort", port.get("port")) != KERNEL_PORTS[-1]
                    ):
                        bad.append(f"{what}: ingress port {port} (only the kernel ports)")
    return bad


def check(objects: list[dict[str, Any]]) -> list[str]:
    """Every violation of the invariants in `objects` (empty: none)."""
    bad: list[str] = []
    sandbox_labels = []
    for what, role, spec, labels in _pod_specs(objects):
        sandbox = role == "sandbox"
        bad += _check_pod(what, spec, sandbox)
        if sandbox:
            sandbox_labels.append(labels)
            bad += _check_sandbox_pod(what, spec, what.split("/", 1)[1])
        elif _secrets_used(spec) & set(PROXY_ONLY_SECRETS) and role != "proxy":
            bad.append(f"{what}: mounts a key Secret but is not the proxy")
    bad += _check_network(objects, sandbox_labels)
    bound = {
        s.get("name")
        for o in objects
        if o.get("kind") in ("RoleBinding", "ClusterRoleBinding")
        for s in o.get("subjects") or []
        if s.get("kind") == "ServiceAccount"
    }
    for obj in objects:
        what = _name(obj)
        if obj.get("kind") == "ServiceAccount" and obj["metadata"].get("name") == m.SANDBOX_SA:
            if obj.get("automountServiceAccountToken") is not False:
                bad.append(f"{what}: automountServiceAccountToken must be false")
            if m.SANDBOX_SA in bound:
                bad.append(f"{what}: the sandboxes' ServiceAccount must not be bound to any role")
        if obj.get("kind") in ("Role", "ClusterRole") and obj["metadata"].get("name") == m.PROXY_SA:
            for rule in obj.get("rules") or []:
                if set(rule.get("verbs") or []) - READ_VERBS or "*" in (rule.get("resources") or []):
                    bad.append(f"{what}: the proxy's role may only read ({sorted(READ_VERBS)})")
    return bad
