"""`openshell k8s render|install` and `openshell sandbox ... --backend kubernetes`, run as a user would
(the CLI in a subprocess), against the stand-in API server.

render: every document is valid for the pinned Kubernetes version and holds the invariants, and no key
material is printed; -o also writes the Localhost seccomp profile (the Docker backend's, from the same
rule list). install: creates everything, an install again replaces but keeps the CA and the keys; a 403
is explained. sandbox: create, ls, exec, policy, logs, stop, rm through backend_of.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import kubernetes_validate
import yaml

from jupyter_openshell.runtime.docker import _profile
from jupyter_openshell.runtime.kubernetes import _invariants
from jupyter_openshell.runtime.kubernetes._settings import K8S_VERSION

from .conftest import install as standin_install


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_openshell", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        cwd="/",
    )


def test_render_prints_valid_manifests_without_keys(state, tmp_path):
    out = _cli("k8s", "render", "--namespace", "team-a", "--seccomp", "Localhost", env={})
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert len(docs) >= 20 and all(d["metadata"].get("namespace", "team-a") == "team-a" for d in docs)
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert _invariants.check(docs) == []
    assert "PRIVATE KEY" not in out.stdout and "BEGIN CERTIFICATE" not in out.stdout
    written = _cli("k8s", "render", "-o", str(tmp_path / "out"), env={})
    assert written.returncode == 0, written.stderr
    assert json.loads((tmp_path / "out" / "sandbox-seccomp.json").read_text()) == _profile.profile()
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "install.yaml",
        "sandbox-example.yaml",
        "sandbox-seccomp.json",
    }


def test_install_applies_everything_and_keeps_the_ca_and_keys(kube, state, tmp_path):
    env = {"KUBECONFIG": str(kube.kubeconfig(tmp_path / "kc"))}
    first = _cli("k8s", "install", env=env)
    assert first.returncode == 0, first.stderr
    assert all(line.startswith("created ") for line in first.stdout.splitlines())
    assert "PRIVATE KEY" not in first.stdout + first.stderr
    ca = kube.get("secrets", "openshell", "openshell-proxy-ca")
    assert set(ca["data"]) == {"mitmproxy-ca.pem", "mitmproxy-ca-cert.pem"}
    assert (
        "BEGIN CERTIFICATE"
        in kube.get("configmaps", "openshell", "openshell-ca-bundle")["data"]["ca-bundle.pem"]
    )
    kube.patch("secrets", "openshell", "openshell-keys", {"data": {"LLM_KEY": "c2VjcmV0"}})
    again = _cli("k8s", "install", env=env)
    assert again.returncode == 0, again.stderr
    assert "kept Secret/openshell-proxy-ca (exists)" in again.stdout
    assert "kept Secret/openshell-keys (exists)" in again.stdout
    assert "replaced Deployment/openshell-proxy" in again.stdout
    assert kube.get("secrets", "openshell", "openshell-keys")["data"] == {"LLM_KEY": "c2VjcmV0"}
    assert kube.get("secrets", "openshell", "openshell-proxy-ca")["data"] == ca["data"]


def test_install_forbidden_is_explained(kube, state, tmp_path):
    kube.fail("POST", r"/deployments$", 403)
    out = _cli("k8s", "install", env={"KUBECONFIG": str(kube.kubeconfig(tmp_path / "kc"))})
    assert out.returncode == 1
    assert "forbidden (403)" in out.stderr and "Deployment/openshell-proxy" in out.stderr


def test_sandbox_commands_on_the_kubernetes_backend(kube, state, tmp_path):
    kubeconfig = kube.kubeconfig(tmp_path / "kc")
    from jupyter_openshell.runtime.kubernetes._settings import KubeSettings

    standin_install(kube, KubeSettings())
    env = {"OPENSHELL_K8S_KUBECONFIG": str(kubeconfig), "OPENSHELL_K8S_SERVER_ID": "srv0cli0"}
    created = _cli("sandbox", "create", "--backend", "kubernetes", "--name", "cli-1", env=env)
    assert created.returncode == 0, created.stderr
    listed = _cli("sandbox", "ls", env=env)
    assert "cli-1" in listed.stdout and "kubernetes" in listed.stdout, listed
    ran = _cli("sandbox", "exec", "cli-1", "--", "sh", "-c", "echo hi; exit 4", env=env)
    assert (ran.returncode, ran.stdout) == (4, "hi\n"), ran
    policy = tmp_path / "p.yaml"
    policy.write_text("network:\n  egress:\n    - host: api.example.com\n      action: allow\n")
    assert _cli("sandbox", "policy", "cli-1", "--set", str(policy), env=env).returncode == 0
    cms = kube.objects("configmaps", "openshell", "openshell.io/sandbox=cli-1")
    assert cms[0]["data"]["policy.yaml"] == policy.read_text()
    assert "stand-in pod log" in _cli("sandbox", "logs", "cli-1", env=env).stdout
    assert _cli("sandbox", "stop", "cli-1", env=env).returncode == 0
    assert _cli("sandbox", "rm", "cli-1", env=env).returncode == 0
    assert kube.objects("pods", "openshell", "openshell.io/sandbox=cli-1") == []
    assert kube.objects("configmaps", "openshell", "openshell.io/sandbox=cli-1") == []
