"""The proxy's Kubernetes source against the stand-in API server: the real proxy (`openshell proxy
--kube-namespace`) watches the sandbox ConfigMaps the real backend writes, and a command exec'd in the
"pod" (the stand-in runs it on this host with the pod's environment: HTTPS_PROXY with the pod's own
credential) reaches it from the pod's address (a loopback stand-in, 127.0.0.1x).

Shown: a sandbox is served its own policy only once its pod runs (credential + source); a ConfigMap
change applies to the next request; an invalid one changes nothing and is reported in the status;
stop and delete unregister it; a 410 Gone (history compacted) is survived by listing again. Controls:
the same command from another address, or after stop, is refused (407), so the test can see a proxy
that served it anyway.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from jupyter_openshell.runtime import SandboxSpec
from jupyter_openshell.runtime.kubernetes import KubernetesBackend
from jupyter_openshell.runtime.kubernetes._settings import KubeSettings
from jupyter_openshell.testing import UpstreamServer, start_proxy

from .conftest import install

HOST_DENY = "network:\n  egress:\n    - action: deny\n"
ALLOW = """\
network:
  egress:
    - host: api.example.com
      ports: [{port}]
      addresses: ["127.0.0.1"]
      paths:
        - path: "/{prefix}/**"
      action: allow
"""


@pytest.fixture
def cluster(kube, state, tmp_path):
    """(backend, proxy, upstream): the stand-in with OpenShell installed, its proxy Service pointing at a
    real proxy that watches it."""
    kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig")
    pstate = tmp_path / "proxy-state"
    pstate.mkdir(mode=0o700)
    (pstate / "default.yaml").write_text(HOST_DENY)
    proxy = start_proxy(
        pstate,
        pstate / "default.yaml",
        resolve={"api.example.com": "127.0.0.1"},
        extra=[
            "--kube-namespace",
            "openshell",
            "--kubeconfig",
            str(kubeconfig),
        ],
    )
    settings = KubeSettings(kubeconfig=str(kubeconfig), server_id="srv0test", start_timeout=10)
    install(kube, settings, proxy_port=proxy.port)
    with UpstreamServer() as upstream:
        yield KubernetesBackend(settings), proxy, upstream
    proxy.stop()


def _curl(backend, name: str, url: str, source: str | None = None) -> int:
    """curl in the pod (its environment: the proxy with its credential), from the pod's address."""
    source = source or backend.status(name).address
    p = backend.exec(
        name,
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
            "--interface",
            source,
            url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, _err = p.communicate(timeout=30)
    return int(out or 0) if out.isdigit() else 0


def _until(fn, want, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_configmap_source_serves_each_pod_its_policy(cluster, kube, tmp_path):
    backend, proxy, upstream = cluster
    policy = tmp_path / "p.yaml"
    policy.write_text(ALLOW.format(port=upstream.port, prefix="a"))
    info = backend.create(SandboxSpec.from_policy_file(policy, name="web"))
    pod = info.details["pod"]
    url = f"http://api.example.com:{upstream.port}/a/1"
    assert _until(lambda: _curl(backend, "web", url), 200) == 200
    assert _curl(backend, "web", f"http://api.example.com:{upstream.port}/b/1") == 403
    st = proxy.client.status()
    assert st["kubernetes"]["connected"] and st["sandboxes"][pod]["channel"] == "token"
    assert st["sandboxes"][pod]["source"] == info.address
    recs = [r for r in proxy.client.flows(created="any") if r["path"] in ("/a/1", "/b/1")]
    # (407s of tries before the registration arrived carry no sandbox; every decision is the pod's)
    assert {r["sandbox"] for r in recs if r["rule"] != "identity"} == {pod}
    assert {r["status"] for r in recs if r["rule"] == "identity"} <= {407}
    # the same credential from another address: refused (control of the identity binding)
    assert _curl(backend, "web", url, source="127.0.0.250") == 407

    # a ConfigMap change applies to the next request
    backend.set_policy("web", ALLOW.format(port=upstream.port, prefix="b"))
    assert _until(lambda: _curl(backend, "web", f"http://api.example.com:{upstream.port}/b/2"), 200) == 200
    assert _curl(backend, "web", url) == 403

    # an invalid version (written to the ConfigMap directly: the backend would refuse it) changes nothing
    cm = f"{pod}-policy"
    version = proxy.client.status()["policies"][pod]["version"]
    kube.patch(
        "configmaps", "openshell", cm, {"data": {"policy.yaml": "network:\n  egress: [{action: allw}]\n"}}
    )
    err = _until(lambda: bool(proxy.client.status()["policies"][pod]["last_error"]), True)
    assert err is True
    assert proxy.client.status()["policies"][pod]["version"] == version
    assert _curl(backend, "web", f"http://api.example.com:{upstream.port}/b/3") == 200

    # stop: the source address is cleared, the registration goes
    backend.stop("web")
    assert _until(lambda: pod in proxy.client.status()["sandboxes"], False) is False
    assert "pending" in proxy.client.status()["kubernetes"]["problems"][cm]


def test_deleted_configmap_unregisters_and_410_relists(cluster, kube, tmp_path):
    backend, proxy, _upstream = cluster
    info = backend.create(SandboxSpec(name="a"))
    pod = info.details["pod"]
    assert _until(lambda: pod in proxy.client.status()["sandboxes"], True)
    lists = len(
        [
            r
            for r in kube.requests
            if r.method == "GET" and r.path.endswith("/configmaps") and "watch" not in r.query
        ]
    )
    kube.compact()  # the open watch ends; watching again from its resourceVersion gets 410 Gone
    second = backend.create(SandboxSpec(name="b"))
    assert _until(lambda: second.details["pod"] in proxy.client.status()["sandboxes"], True) is True
    relisted = [
        r
        for r in kube.requests
        if r.method == "GET" and r.path.endswith("/configmaps") and "watch" not in r.query
    ]
    assert len(relisted) > lists  # the source listed again after the 410
    kube.delete("configmaps", "openshell", f"{pod}-policy")
    assert _until(lambda: pod in proxy.client.status()["sandboxes"], False) is False
    assert not (proxy.state_dir / "kube" / f"{pod}.yaml").exists()


def test_configmap_with_a_bad_field_registers_nothing(cluster, kube):
    backend, proxy, _upstream = cluster
    info = backend.create(SandboxSpec(name="bad"))
    cm = f"{info.details['pod']}-policy"
    assert _until(lambda: info.details["pod"] in proxy.client.status()["sandboxes"], True) is True
    kube.patch("configmaps", "openshell", cm, {"data": {"token_sha256": "not-a-hash"}})
    assert _until(lambda: info.details["pod"] in proxy.client.status()["sandboxes"], False) is False
    assert "token_sha256" in proxy.client.status()["kubernetes"]["problems"][cm]
