"""Every Kubernetes object the backend creates or `openshell k8s render/install` prints, as pure functions
of their inputs (plain dicts, the API's JSON shape).

Per sandbox: a Pod, a ConfigMap (its policy and its registration: the SHA-256 of its credential and, once
it runs, its pod IP: what the proxy watches) and a Secret (its credential, in that pod only), all owned
by this server's anchor ConfigMap. Per namespace (`install_objects`): the Namespace (Pod Security
"restricted" enforced), the proxy's ServiceAccount, Role (read ConfigMaps and the key Secret), RoleBinding,
Deployment and Service, the host caller's deny-all policy, the CA bundle ConfigMap, the CA and key
Secrets (mounted into the proxy only), the sandboxes' ServiceAccount (no token, no binding) and the
NetworkPolicies (sandboxes: egress only to the proxy pods' TCP port, ingress only from the Jupyter
server's pods to the kernel ports; the proxy: ingress from sandboxes and Jupyter only).

The security settings are named blocks (`SANDBOX_POD_FLAGS`, `POD_SECURITY`, `CONTAINER_SECURITY`, ...)
that `_invariants.check` verifies on the result; tests remove each one in turn to show the check sees it.
It must never read a cluster, a file or the environment.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import re
from typing import Any

from .._agent_env import CA_VARS
from ._settings import (
    KERNEL_PORTS,
    LOCALHOST_PROFILE,
    PROXY_PORT,
    PROXY_UID,
    SANDBOX_UID,
    KubeSettings,
)

MANAGED = {"app.kubernetes.io/managed-by": "jupyter-openshell"}
SANDBOX_APP = "openshell-sandbox"
PROXY_APP = "openshell-proxy"
SANDBOX_SA = "openshell-sandbox"
PROXY_SA = "openshell-proxy"
SERVER_SA = "openshell-server"  # the Jupyter server's (in the cluster): what the backend does
SERVER_RULES = [
    {
        "apiGroups": [""],
        "resources": ["pods", "configmaps", "secrets"],
        "verbs": ["create", "get", "list", "watch", "patch", "delete", "deletecollection"],
    },
    {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]},
    {"apiGroups": [""], "resources": ["pods/log", "services"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
]
CA_BUNDLE_CM = "openshell-ca-bundle"
CA_SECRET = "openshell-proxy-ca"
KEYS_SECRET = "openshell-keys"
DEFAULT_POLICY_CM = "openshell-proxy-default"
ROLE = "openshell.io/role"
SANDBOX = "openshell.io/sandbox"
INSTANCE = "openshell.io/instance"
OWNER = "openshell.io/owner"
CHANNEL_DIR = "/etc/openshell"  # the credential and the CA bundle (the local backend's CA path)
CA_PATH = f"{CHANNEL_DIR}/ca-bundle.pem"
WORKSPACE = "/workspace"
HOME = "/tmp/home"
DENY_ALL = (
    "# The host caller of the in-cluster proxy: nothing (sandboxes are recognised by credential).\n"
    "network:\n  egress:\n    - action: deny\n"
)
# PID 1 of a sandbox pod: reaps orphans (exec'd commands are re-parented here), ends on SIGTERM.
INIT = (
    "import os, signal, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: os._exit(0))\n"
    "while True:\n"
    "    try:\n        os.waitpid(-1, 0)\n"
    "    except ChildProcessError:\n        time.sleep(1)\n"
)

# --- the security blocks (checked by _invariants; see the module docstring) ----------------------------
SANDBOX_POD_FLAGS: dict[str, Any] = {
    "automountServiceAccountToken": False,
    "enableServiceLinks": False,
    "hostNetwork": False,
    "hostPID": False,
    "hostIPC": False,
    "shareProcessNamespace": False,
}
CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}


def pod_security(uid: int, seccomp: dict[str, str]) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": seccomp,
    }


def seccomp_profile(settings: KubeSettings) -> dict[str, str]:
    if settings.seccomp == "Localhost":
        return {"type": "Localhost", "localhostProfile": LOCALHOST_PROFILE}
    return {"type": "RuntimeDefault"}


def container_security(uid: int, seccomp: dict[str, str]) -> dict[str, Any]:
    return {
        **copy.deepcopy(CONTAINER_SECURITY),
        "runAsUser": uid,
        "runAsGroup": uid,
        "seccompProfile": seccomp,
    }


def tmp_volume(size: int) -> dict[str, Any]:
    """/tmp: memory-backed (its pages count as the sandbox's memory), limited to `resources.disk`."""
    return {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": str(size)}}


def sandbox_network_policy(settings: KubeSettings) -> dict[str, Any]:
    """Sandbox pods: egress only TCP to the proxy pods' port (no DNS: the proxy is addressed by IP);
    ingress only from the Jupyter server's pods to the kernel ports."""
    return _obj(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        "openshell-sandboxes",
        settings.namespace,
        {ROLE: "sandbox-network"},
        spec={
            "podSelector": {"matchLabels": sandbox_selector()},
            "policyTypes": ["Ingress", "Egress"],
            "egress": [
                {
                    "to": [{"podSelector": {"matchLabels": proxy_selector()}}],
                    "ports": [{"protocol": "TCP", "port": PROXY_PORT}],
                }
            ],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": dict(settings.jupyter_labels)}}],
                    "ports": [{"protocol": "TCP", "port": KERNEL_PORTS[0], "endPort": KERNEL_PORTS[-1]}],
                }
            ],
        },
    )


# --- helpers ------------------------------------------------------------------------------------------------
def _obj(
    api: str, kind: str, name: str, namespace: str | None, labels: dict[str, str], **fields: Any
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {**MANAGED, **labels}}
    if namespace is not None:
        meta["namespace"] = namespace
    return {"apiVersion": api, "kind": kind, "metadata": meta, **fields}


def sandbox_selector() -> dict[str, str]:
    return {"app.kubernetes.io/name": SANDBOX_APP, ROLE: "sandbox"}


def proxy_selector() -> dict[str, str]:
    return {"app.kubernetes.io/name": PROXY_APP}


def object_name(name: str, instance: str) -> str:
    """`sb-<name>-<instance>`: a DNS label (pod names become host names) from a sandbox name, which may
    hold '_' and '.'; a hash of the name keeps two names that differ only there apart."""
    slug = re.sub(r"[^a-z0-9-]+", "-", name).strip("-")[:30] or "x"
    tag = hashlib.sha256(name.encode()).hexdigest()[:4]
    return f"sb-{slug}-{tag}{instance}"


def anchor_name(server_id: str) -> str:
    return f"openshell-anchor-{server_id}"


def quantity_cpu(cpu: float) -> str:
    return f"{max(1, round(cpu * 1000))}m"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- per server, per sandbox --------------------------------------------------------------------------------
def anchor(settings: KubeSettings, host: str, pod: tuple[str, str] | None = None) -> dict[str, Any]:
    """This server's anchor: every sandbox object it makes is owned by it, so deleting it (or, in the
    cluster, the server's own pod `pod` = (name, uid) that owns it) collects them all."""
    obj = _obj(
        "v1",
        "ConfigMap",
        anchor_name(settings.server_id),
        settings.namespace,
        {ROLE: "anchor", OWNER: settings.server_id},
        data={"server": settings.server_id, "host": host},
    )
    if pod is not None:
        obj["metadata"]["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Pod", "name": pod[0], "uid": pod[1]}
        ]
    return obj


def owner_reference(anchor_obj: dict[str, Any]) -> dict[str, Any]:
    meta = anchor_obj["metadata"]
    return {"apiVersion": "v1", "kind": "ConfigMap", "name": meta["name"], "uid": meta["uid"]}


def sandbox_labels(settings: KubeSettings, name: str, instance: str, role: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": SANDBOX_APP,
        ROLE: role,
        SANDBOX: name,
        INSTANCE: instance,
        OWNER: settings.server_id,
    }


def sandbox_objects(
    settings: KubeSettings,
    *,
    name: str,
    instance: str,
    created: float,
    policy_text: str,
    token: str,
    limits: Any,
    gpu: bool,
    proxy: str,
    owner: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """[Secret (credential), ConfigMap (policy + registration), Pod] of one sandbox instance."""
    base = object_name(name, instance)
    ns = settings.namespace
    secret = _obj(
        "v1",
        "Secret",
        f"{base}-token",
        ns,
        sandbox_labels(settings, name, instance, "sandbox-token"),
        type="Opaque",
        data={"token": _b64(token)},
    )
    config = _obj(
        "v1",
        "ConfigMap",
        f"{base}-policy",
        ns,
        sandbox_labels(settings, name, instance, "sandbox-policy"),
        data={
            "policy.yaml": policy_text,
            "sandbox": name,
            "created": repr(created),
            "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
        },
    )
    pod = sandbox_pod(
        settings,
        name=name,
        instance=instance,
        limits=limits,
        gpu=gpu,
        proxy=proxy,
        secret=secret["metadata"]["name"],
    )
    if owner is not None:
        for obj in (secret, config, pod):
            obj["metadata"]["ownerReferences"] = [dict(owner)]
    return [secret, config, pod]


def sandbox_pod(
    settings: KubeSettings, *, name: str, instance: str, limits: Any, gpu: bool, proxy: str, secret: str
) -> dict[str, Any]:
    seccomp = seccomp_profile(settings)
    proxy_url = f"http://openshell:$(OPENSHELL_TOKEN)@{proxy}"
    env: list[dict[str, Any]] = [
        {"name": "OPENSHELL_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}}},
        {"name": "OPENSHELL_SANDBOX", "value": name},
        {"name": "HOME", "value": HOME},
        {"name": "TMPDIR", "value": "/tmp"},
        {"name": "LANG", "value": "C.UTF-8"},
        {"name": "NO_PROXY", "value": "localhost,127.0.0.1,::1"},
        {"name": "no_proxy", "value": "localhost,127.0.0.1,::1"},
    ]
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env += [{"name": var, "value": proxy_url}, {"name": var.lower(), "value": proxy_url}]
    env += [{"name": var, "value": CA_PATH} for var in CA_VARS]
    resources: dict[str, dict[str, str]] = {"limits": {}, "requests": {}}
    if limits.cpu:
        resources["limits"]["cpu"] = resources["requests"]["cpu"] = quantity_cpu(limits.cpu)
    if limits.memory:
        resources["limits"]["memory"] = resources["requests"]["memory"] = str(limits.memory)
    if gpu:
        resources["limits"]["nvidia.com/gpu"] = "1"
    tmp_size = limits.disk or 512 << 20
    container = {
        "name": "sandbox",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python3", "-I", "-S", "-B", "-c", INIT],
        "workingDir": WORKSPACE,
        "env": env,
        "resources": {k: v for k, v in resources.items() if v},
        "securityContext": container_security(SANDBOX_UID, seccomp),
        "volumeMounts": [
            {"name": "workspace", "mountPath": WORKSPACE},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "channel", "mountPath": CHANNEL_DIR, "readOnly": True},
        ],
    }
    spec: dict[str, Any] = {
        **copy.deepcopy(SANDBOX_POD_FLAGS),
        "serviceAccountName": SANDBOX_SA,
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 2,
        # no DNS: nothing answers at 127.0.0.1, so lookups fail at once (the proxy resolves names)
        "dnsPolicy": "None",
        "dnsConfig": {
            "nameservers": ["127.0.0.1"],
            "options": [{"name": "attempts", "value": "1"}, {"name": "timeout", "value": "1"}],
        },
        "securityContext": pod_security(SANDBOX_UID, seccomp),
        "containers": [container],
        "volumes": [
            {"name": "workspace", "emptyDir": {"sizeLimit": settings.workspace_size}},
            tmp_volume(tmp_size),
            {
                "name": "channel",
                "projected": {
                    "defaultMode": 0o440,
                    "sources": [
                        {"secret": {"name": secret, "items": [{"key": "token", "path": "token"}]}},
                        {
                            "configMap": {
                                "name": CA_BUNDLE_CM,
                                "items": [{"key": "ca-bundle.pem", "path": "ca-bundle.pem"}],
                            }
                        },
                    ],
                },
            },
        ],
    }
    if limits.timeout:
        spec["activeDeadlineSeconds"] = int(limits.timeout)
    if settings.runtime_class:
        spec["runtimeClassName"] = settings.runtime_class
    return _obj(
        "v1",
        "Pod",
        object_name(name, instance),
        settings.namespace,
        sandbox_labels(settings, name, instance, "sandbox"),
        spec=spec,
    )


# --- per namespace (`openshell k8s install`) ----------------------------------------------------------------
def install_objects(
    settings: KubeSettings,
    *,
    ca_bundle: str = "",
    ca_files: dict[str, bytes] | None = None,
    keys: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """What `openshell k8s install` applies, in order. `ca_bundle`/`ca_files` (the proxy's CA, key included)
    and `keys` (inference keys) are filled by install; `render` leaves them empty (never print a key)."""
    ns = settings.namespace
    seccomp = seccomp_profile(settings)
    proxy_labels = {**proxy_selector(), ROLE: "proxy"}
    psa = {f"pod-security.kubernetes.io/{m}": "restricted" for m in ("enforce", "audit", "warn")}
    psa["pod-security.kubernetes.io/enforce-version"] = "v" + ".".join(_k8s_minor())
    out = [
        _obj("v1", "Namespace", ns, None, psa),
        _obj("v1", "ServiceAccount", SANDBOX_SA, ns, {ROLE: "sandbox"}, automountServiceAccountToken=False),
        _obj("v1", "ServiceAccount", PROXY_SA, ns, {ROLE: "proxy"}),
        _obj(
            "rbac.authorization.k8s.io/v1",
            "Role",
            PROXY_SA,
            ns,
            {ROLE: "proxy"},
            rules=[
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "resourceNames": [KEYS_SECRET],
                    "verbs": ["get", "list", "watch"],
                },
            ],
        ),
        _obj(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            PROXY_SA,
            ns,
            {ROLE: "proxy"},
            roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": PROXY_SA},
            subjects=[{"kind": "ServiceAccount", "name": PROXY_SA, "namespace": ns}],
        ),
        _obj("v1", "ServiceAccount", SERVER_SA, ns, {ROLE: "server"}),
        _obj("rbac.authorization.k8s.io/v1", "Role", SERVER_SA, ns, {ROLE: "server"}, rules=SERVER_RULES),
        _obj(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            SERVER_SA,
            ns,
            {ROLE: "server"},
            roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SERVER_SA},
            subjects=[{"kind": "ServiceAccount", "name": SERVER_SA, "namespace": ns}],
        ),
        _obj("v1", "ConfigMap", DEFAULT_POLICY_CM, ns, {ROLE: "proxy"}, data={"default.yaml": DENY_ALL}),
        _obj("v1", "ConfigMap", CA_BUNDLE_CM, ns, {ROLE: "ca-bundle"}, data={"ca-bundle.pem": ca_bundle}),
        _obj(
            "v1",
            "Secret",
            CA_SECRET,
            ns,
            {ROLE: "proxy-ca"},
            type="Opaque",
            data={k: base64.b64encode(v).decode() for k, v in (ca_files or {}).items()},
        ),
        _obj(
            "v1",
            "Secret",
            KEYS_SECRET,
            ns,
            {ROLE: "keys"},
            type="Opaque",
            data={k: _b64(v) for k, v in (keys or {}).items()},
        ),
        proxy_deployment(settings, proxy_labels, seccomp),
        _obj(
            "v1",
            "Service",
            settings.proxy_service,
            ns,
            {ROLE: "proxy"},
            spec={
                "type": "ClusterIP",
                "selector": proxy_selector(),
                "ports": [{"name": "proxy", "port": PROXY_PORT, "targetPort": PROXY_PORT, "protocol": "TCP"}],
            },
        ),
        sandbox_network_policy(settings),
        _obj(
            "networking.k8s.io/v1",
            "NetworkPolicy",
            "openshell-proxy",
            ns,
            {ROLE: "proxy-network"},
            spec={
                "podSelector": {"matchLabels": proxy_selector()},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {"podSelector": {"matchLabels": sandbox_selector()}},
                            {"podSelector": {"matchLabels": dict(settings.jupyter_labels)}},
                        ],
                        "ports": [{"protocol": "TCP", "port": PROXY_PORT}],
                    }
                ],
            },
        ),
    ]
    return out


def _k8s_minor() -> list[str]:
    from ._settings import K8S_VERSION

    return K8S_VERSION.split(".")[:2]


def proxy_deployment(
    settings: KubeSettings, labels: dict[str, str], seccomp: dict[str, str]
) -> dict[str, Any]:
    """The same `openshell proxy`, watching this namespace's sandbox ConfigMaps (`--kube-namespace`). Its
    CA and the inference keys are copied from their Secrets into its private state (0600, its uid) by
    an init container: nothing else mounts them."""
    security = container_security(PROXY_UID, seccomp)
    copy_state = (
        "umask 077 && mkdir -p /state/ca /state/secrets && cp /ca/* /state/ca/ && "
        'for f in /keys/*; do [ -f "$f" ] && cp "$f" /state/secrets/; done; true'
    )
    template = {
        "metadata": {"labels": {**MANAGED, **labels}},
        "spec": {
            "serviceAccountName": PROXY_SA,
            "automountServiceAccountToken": True,  # it watches the sandboxes' ConfigMaps
            "enableServiceLinks": False,
            "securityContext": pod_security(PROXY_UID, seccomp),
            "initContainers": [
                {
                    "name": "state",
                    "image": settings.proxy_image,
                    "imagePullPolicy": settings.image_pull_policy,
                    "command": ["sh", "-c", copy_state],
                    "securityContext": security,
                    "volumeMounts": [
                        {"name": "state", "mountPath": "/state"},
                        {"name": "ca", "mountPath": "/ca", "readOnly": True},
                        {"name": "keys", "mountPath": "/keys", "readOnly": True},
                    ],
                }
            ],
            "containers": [
                {
                    "name": "proxy",
                    "image": settings.proxy_image,
                    "imagePullPolicy": settings.image_pull_policy,
                    "command": [
                        "python3",
                        "-I",
                        "-m",
                        "jupyter_openshell",
                        "proxy",
                        "--listen",
                        f"0.0.0.0:{PROXY_PORT}",
                        "--policy",
                        "/etc/openshell/default/default.yaml",
                        "--state-dir",
                        "/state",
                        "--kube-namespace",
                        "$(POD_NAMESPACE)",
                    ],
                    "env": [
                        {
                            "name": "POD_NAMESPACE",
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                        },
                        {"name": "HOME", "value": "/state"},
                    ],
                    "ports": [{"name": "proxy", "containerPort": PROXY_PORT, "protocol": "TCP"}],
                    "readinessProbe": {"tcpSocket": {"port": PROXY_PORT}, "periodSeconds": 5},
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "256Mi"},
                        "limits": {"memory": "1Gi"},
                    },
                    "securityContext": security,
                    "volumeMounts": [
                        {"name": "state", "mountPath": "/state"},
                        {"name": "tmp", "mountPath": "/tmp"},
                        {"name": "default-policy", "mountPath": "/etc/openshell/default", "readOnly": True},
                    ],
                }
            ],
            "volumes": [
                {"name": "state", "emptyDir": {}},
                {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                {"name": "default-policy", "configMap": {"name": DEFAULT_POLICY_CM}},
                {"name": "ca", "secret": {"secretName": CA_SECRET, "defaultMode": 0o400}},
                {
                    "name": "keys",
                    "secret": {"secretName": KEYS_SECRET, "defaultMode": 0o400, "optional": True},
                },
            ],
        },
    }
    return _obj(
        "apps/v1",
        "Deployment",
        "openshell-proxy",
        settings.namespace,
        labels,
        spec={"replicas": 1, "selector": {"matchLabels": proxy_selector()}, "template": template},
    )


def render(settings: KubeSettings) -> dict[str, list[dict[str, Any]]]:
    """Every manifest, for review and GitOps: {"install": the namespace's objects (no key material),
    "sandbox-example": the objects the backend makes per sandbox (placeholders for the credential,
    the proxy's ClusterIP and the anchor's uid)}."""
    from .._resources import Limits

    example = sandbox_objects(
        settings,
        name="example",
        instance="00000000",
        created=0.0,
        policy_text=DENY_ALL.replace(
            "The host caller of the in-cluster proxy: nothing (sandboxes are recognised by credential).",
            "A sandbox's policy (shown: deny all).",
        ),
        token="CREATED-PER-SANDBOX",
        limits=Limits(cpu=1.0, memory=2 << 30, pids=256, disk=512 << 20, timeout=None),
        gpu=False,
        proxy=f"PROXY-CLUSTER-IP:{PROXY_PORT}",
        owner={
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": anchor_name(settings.server_id),
            "uid": "00000000-0000-0000-0000-000000000000",
        },
    )
    return {"install": install_objects(settings), "sandbox-example": [anchor(settings, "HOST"), *example]}
