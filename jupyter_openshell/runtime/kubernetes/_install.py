"""`openshell k8s install`: apply the namespace's OpenShell objects (`_manifests.install_objects`) to a
cluster, after `_invariants.check`.

Each object is created, or replaced where it exists (an install again is an upgrade), except the
proxy's CA and the inference keys: an existing CA Secret is kept (sandboxes trust it), and the keys
Secret is only created (empty) when missing, never overwritten. The CA is this state directory's proxy
CA (`<state>/ca`, made if needed), so the in-cluster proxy intercepts with the CA that local sandboxes
trust too. It must never print key material.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ... import paths
from .._types import SandboxError
from . import _client, _invariants, _manifests
from ._settings import KubeSettings

KEEP = (_manifests.CA_SECRET, _manifests.KEYS_SECRET)  # never replaced once there


def _ca() -> tuple[str, dict[str, bytes]]:
    from ...proxy._ca import ensure_ca

    confdir = paths.ensure_private_dir(paths.layout().ca_dir)
    bundle = ensure_ca(confdir)
    files = {name: (confdir / name).read_bytes() for name in ("mitmproxy-ca.pem", "mitmproxy-ca-cert.pem")}
    return bundle.read_text(), files


def _methods(api_client: Any, kind: str) -> tuple[Callable[..., Any], Callable[..., Any], bool]:
    """(create, replace, namespaced) for `kind`."""
    from kubernetes import client

    core, rbac = client.CoreV1Api(api_client), client.RbacAuthorizationV1Api(api_client)
    apps, net = client.AppsV1Api(api_client), client.NetworkingV1Api(api_client)
    table = {
        "Namespace": (core.create_namespace, core.replace_namespace, False),
        "ServiceAccount": (
            core.create_namespaced_service_account,
            core.replace_namespaced_service_account,
            True,
        ),
        "ConfigMap": (core.create_namespaced_config_map, core.replace_namespaced_config_map, True),
        "Secret": (core.create_namespaced_secret, core.replace_namespaced_secret, True),
        "Service": (core.create_namespaced_service, core.patch_namespaced_service, True),
        "Role": (rbac.create_namespaced_role, rbac.replace_namespaced_role, True),
        "RoleBinding": (rbac.create_namespaced_role_binding, rbac.replace_namespaced_role_binding, True),
        "Deployment": (apps.create_namespaced_deployment, apps.replace_namespaced_deployment, True),
        "NetworkPolicy": (net.create_namespaced_network_policy, net.replace_namespaced_network_policy, True),
    }
    return table[kind]


def install(settings: KubeSettings, log: Callable[[str], None] = print) -> list[str]:
    """Apply every install object; returns "created|replaced|kept KIND/NAME" lines."""
    from kubernetes.client.exceptions import ApiException

    bundle, ca_files = _ca()
    objects = _manifests.install_objects(settings, ca_bundle=bundle, ca_files=ca_files)
    violations = _invariants.check(objects)
    if violations:
        raise SandboxError(
            "refusing to install objects that break the invariants:\n  " + "\n  ".join(violations)
        )
    api_client = _client.api_client(settings)
    done = []
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        create, replace, namespaced = _methods(api_client, kind)
        what = f"{kind}/{name}"
        try:
            create(settings.namespace, obj) if namespaced else create(obj)
            line = f"created {what}"
        except ApiException as exc:
            if exc.status != 409:
                raise _client.explain(exc, f"create {what}", settings) from None
            if name in KEEP:
                line = f"kept {what} (exists)"
            else:
                try:
                    replace(name, settings.namespace, obj) if namespaced else replace(name, obj)
                except ApiException as again:
                    raise _client.explain(again, f"replace {what}", settings) from None
                line = f"replaced {what}"
        done.append(line)
        log(line)
    return done
