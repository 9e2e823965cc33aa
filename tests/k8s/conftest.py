"""Fixtures for the Kubernetes backend: the stand-in API server (`FakeKubeAPI`) with the namespace's
OpenShell objects installed, settings pointing at it, a private state directory per test, and the
backend. The stand-in runs exec'd commands on this host (with the pod's environment, `python3` being this
venv's interpreter), so the launcher's protocol and the pod's proxy settings are exercised for real;
nothing is isolated there: isolation is what the podman and real-cluster tests show.
"""

from __future__ import annotations

import contextlib
import sys

import pytest

from jupyter_openshell.runtime.kubernetes import _manifests
from jupyter_openshell.runtime.kubernetes._settings import KubeSettings
from jupyter_openshell.testing.kube_api import FakeKubeAPI


def install(api: FakeKubeAPI, settings: KubeSettings, proxy_port: int = 3128) -> None:
    """What `openshell k8s install` leaves in the namespace (the proxy Service on `proxy_port`)."""
    resources = {
        "Namespace": "namespaces",
        "ServiceAccount": "serviceaccounts",
        "Role": "roles",
        "RoleBinding": "rolebindings",
        "ConfigMap": "configmaps",
        "Secret": "secrets",
        "Deployment": "deployments",
        "Service": "services",
        "NetworkPolicy": "networkpolicies",
    }
    for obj in _manifests.install_objects(settings):
        if obj["kind"] == "Service":
            obj["spec"]["ports"][0]["port"] = proxy_port
        ns = "" if obj["kind"] == "Namespace" else settings.namespace
        api.create(resources[obj["kind"]], ns, obj)


@pytest.fixture
def state(tmp_path, monkeypatch):
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("OPENSHELL_STATE_DIR", str(path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    return path


@pytest.fixture
def kube(tmp_path, state):
    with FakeKubeAPI(python=sys.executable) as api:
        api.exec_root = tmp_path
        yield api


@pytest.fixture
def settings(kube, tmp_path):
    s = KubeSettings(
        kubeconfig=str(kube.kubeconfig(tmp_path / "kubeconfig")), server_id="srv0test", start_timeout=10
    )
    install(kube, s)
    return s


@pytest.fixture
def backend(settings):
    from jupyter_openshell.runtime.kubernetes import KubernetesBackend

    b = KubernetesBackend(settings)
    yield b
    for info in b.list():
        with contextlib.suppress(Exception):
            b.destroy(info.name)
