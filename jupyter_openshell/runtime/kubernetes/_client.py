"""The Kubernetes API client of the backend and the proxy: configuration (kubeconfig or in-cluster) and
errors turned into messages that say what failed and what to do.

Configuration, first found: the `kubeconfig` setting, $KUBECONFIG, `<state>/kubernetes/kubeconfig`
(written by `openshell cluster up`), ~/.kube/config, else the in-cluster service account. It must never
print a credential of the configuration it loads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ... import paths
from .._types import SandboxError
from ._settings import KubeSettings

MISSING = "the Kubernetes backend needs the kubernetes client: pip install 'jupyter-openshell[kubernetes]'"
SERVER_VERBS = (
    "create, get, list, watch, patch, delete on pods, configmaps and secrets; create on "
    "pods/exec; get on pods/log and services; list on events"
)


def kubeconfig_path(settings: KubeSettings) -> str | None:
    """The kubeconfig in force (None: $KUBECONFIG's own rules, or in-cluster)."""
    if settings.kubeconfig:
        return settings.kubeconfig
    if os.environ.get("KUBECONFIG"):
        return None  # the client honours it (a list of files included)
    for candidate in (paths.layout().kubeconfig, Path.home() / ".kube" / "config"):
        if candidate.is_file():
            return str(candidate)
    return None


def api_client(settings: KubeSettings) -> Any:
    try:
        from kubernetes import client, config
    except ImportError:
        raise SandboxError(MISSING) from None
    cfg = client.Configuration()
    path = kubeconfig_path(settings)
    try:
        if path is not None or os.environ.get("KUBECONFIG"):
            config.load_kube_config(
                config_file=path, context=settings.context or None, client_configuration=cfg
            )
        else:
            config.load_incluster_config(client_configuration=cfg)
    except (config.ConfigException, OSError, ValueError) as exc:
        raise SandboxError(
            f"no usable Kubernetes configuration ({exc}): set OPENSHELL_K8S_KUBECONFIG or KUBECONFIG to a "
            "kubeconfig, run inside the cluster with a service account, or start a local cluster with "
            "`openshell cluster up`"
        ) from None
    return client.ApiClient(cfg)


def where(settings: KubeSettings) -> str:
    config = kubeconfig_path(settings) or os.environ.get("KUBECONFIG") or "in-cluster"
    return f"namespace {settings.namespace} ({config})"


def explain(exc: BaseException, what: str, settings: KubeSettings) -> SandboxError:
    """A SandboxError that says what `what` (e.g. "create pod sb-x") ran into and what to do."""
    status = getattr(exc, "status", None)
    reason = _message(exc)
    place = where(settings)
    if status == 401:
        return SandboxError(
            f"{what}: the API server refused our credentials (401 Unauthorized) in {place}; "
            "renew the kubeconfig's token or certificate"
        )
    if status == 403:
        return SandboxError(
            f"{what}: forbidden (403) in {place}: {reason}. The account of this kubeconfig needs a Role "
            f"there with {SERVER_VERBS} (`openshell k8s render` prints it: Role openshell-server)"
        )
    if status == 409:
        return SandboxError(
            f"{what}: already exists (409) in {place}: {reason}. An earlier sandbox's object is still there: "
            "remove it with `openshell sandbox rm NAME` or `openshell sandbox gc`, or pick another --name"
        )
    if status == 404:
        return SandboxError(
            f"{what}: not found (404) in {place}: {reason}. Is OpenShell installed in that "
            "namespace? `openshell k8s install` sets it up"
        )
    if status in (None, 0):
        return SandboxError(
            f"{what}: cannot reach the Kubernetes API server ({reason}) for {place}; check "
            "that the cluster runs (`kubectl cluster-info`) and the kubeconfig's server address"
        )
    return SandboxError(f"{what}: the API server answered {status} in {place}: {reason}")


def _message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if body:
        import json

        try:
            return str(json.loads(body).get("message") or body)
        except (ValueError, AttributeError):
            return str(body)[:500]
    return str(getattr(exc, "reason", None) or exc)[:500]
