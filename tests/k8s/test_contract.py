"""Contract tests of the Kubernetes backend against a REAL cluster: set OPENSHELL_TEST_KUBECONFIG to a
kubeconfig whose namespace (OPENSHELL_TEST_K8S_NAMESPACE, default "openshell-test") has had
`openshell k8s install` applied and can run the sandbox image. Skipped otherwise, with that reason:
no cluster is reachable from the machines these tests normally run on, and the stand-in API server
(test_backend_standin.py) only shows request sequences and error handling.

Flows: create (wait until Running, the invariants in the pod the cluster admitted), exec (streams, exit
codes, signals), a ConfigMap change applied to the next request through the in-cluster proxy (a host no
rule allows: 403 from the proxy; after the change the proxy lets it through, so the answer is no longer
its 403), delete, clean-up by label, re-attach after a server restart, a clear message for a pod that
cannot be scheduled (a timeout). (403 and 409 answers are only shown against the stand-in.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid

import pytest

from jupyter_openshell.runtime import SandboxError, SandboxSpec

KUBECONFIG = os.environ.get("OPENSHELL_TEST_KUBECONFIG")
pytestmark = pytest.mark.skipif(
    not KUBECONFIG,
    reason="no Kubernetes cluster: set OPENSHELL_TEST_KUBECONFIG to a kubeconfig (namespace with "
    "`openshell k8s install` applied) to run the contract tests on a real API server",
)
DENY = "network:\n  egress:\n    - action: deny\n"
ALLOW = "network:\n  egress:\n    - host: example.com\n      action: allow\n"


@pytest.fixture
def real(state):
    from jupyter_openshell.runtime.kubernetes import KubernetesBackend
    from jupyter_openshell.runtime.kubernetes._settings import KubeSettings

    settings = KubeSettings(
        kubeconfig=KUBECONFIG,
        namespace=os.environ.get("OPENSHELL_TEST_K8S_NAMESPACE", "openshell-test"),
        server_id=f"ct{uuid.uuid4().hex[:8]}",
        start_timeout=300,
    )
    backend = KubernetesBackend(settings)
    yield backend
    for info in backend.list():
        backend.destroy(info.name)
    backend.cleanup()


def _status_through_proxy(backend, name: str, url: str) -> str:
    p = backend.exec(
        name,
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    return p.communicate(timeout=60)[0].decode()


def test_lifecycle_exec_and_policy_change(real, tmp_path):
    policy = tmp_path / "deny.yaml"
    policy.write_text(DENY)
    info = real.create(SandboxSpec.from_policy_file(policy, name="ct-1"))
    assert info.state == "running" and info.address
    p = real.exec(
        "ct-1", ["sh", "-c", "echo out; echo err >&2; exit 3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert p.communicate(timeout=60) == (b"out\n", b"err\n") and p.returncode == 3
    p = real.exec("ct-1", ["sleep", "60"])
    p.send_signal(signal.SIGTERM)
    assert p.wait(60) == -signal.SIGTERM
    assert real.exec("ct-1", ["sh", "-c", "test $(id -u) -ne 0 && ! touch /x"]).wait(60) == 0
    assert _status_through_proxy(real, "ct-1", "https://example.com/") == "000"  # CONNECT refused: 403
    real.set_policy("ct-1", ALLOW)
    deadline = 30
    while deadline and _status_through_proxy(real, "ct-1", "http://example.com/") == "403":
        deadline -= 1
    assert deadline, "the ConfigMap change never reached the proxy"


def test_reattach_cleanup_and_errors(real, state):
    from jupyter_openshell.runtime import _state
    from jupyter_openshell.runtime.kubernetes import KubernetesBackend

    real.create(SandboxSpec(name="ct-2"))
    _state.directory("ct-2").joinpath("sandbox.json").unlink()
    restarted = KubernetesBackend(real.settings)
    assert {i.name for i in restarted.list()} >= {"ct-2"}
    assert restarted.exec("ct-2", ["true"]).wait(60) == 0
    _state.directory("ct-2").joinpath("sandbox.json").unlink()
    assert any(c.startswith("pod/") for c in restarted.cleanup())
    huge = state / "huge.yaml"
    huge.write_text(DENY + "resources:\n  cpu: 1024\n")  # no node has that: never scheduled
    with pytest.raises(SandboxError, match="not Running within"):
        KubernetesBackend(real.settings.with_changes(start_timeout=10)).create(
            SandboxSpec.from_policy_file(huge, name="ct-3")
        )
