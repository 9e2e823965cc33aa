"""The Kubernetes backend against the stand-in API server: the request sequence of each flow (create, wait
until Running, exec, policy change, stop, destroy, clean-up by label, re-attach after a server restart),
and the errors (403, 409, a pod never Running, an image that cannot be pulled, no proxy installed), each
with a clear message and nothing left behind.

What this does NOT show: that a real API server and kubelet behave like the stand-in; the contract tests
(`test_contract.py`) run the same flows against a real cluster when OPENSHELL_TEST_KUBECONFIG names one.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from jupyter_openshell.runtime import SandboxError, SandboxSpec, _state
from jupyter_openshell.runtime.kubernetes import KubernetesBackend, _invariants, _manifests
from jupyter_openshell.runtime.kubernetes._exec import COMMAND

POLICY = "network:\n  egress:\n    - host: api.example.com\n      action: allow\n"


def _leftovers(kube, name: str) -> list[str]:
    return [
        f"{r}/{o['metadata']['name']}"
        for r in ("pods", "configmaps", "secrets")
        for o in kube.objects(r, selector=f"openshell.io/sandbox={name}")
    ]


def _policy_file(tmp_path, text=POLICY):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_create_request_sequence_and_objects(kube, backend, tmp_path):
    info = backend.create(SandboxSpec.from_policy_file(_policy_file(tmp_path), name="agent_1"))
    assert info.state == "running" and info.backend == "kubernetes" and info.address.startswith("127.0.0.")
    calls = [c for c in kube.calls() if "/exec" not in c]
    pod = info.details["pod"]
    ns = "/api/v1/namespaces/openshell"
    expected = [
        f"GET {ns}/services/openshell-proxy",
        f"GET {ns}/configmaps/openshell-anchor-srv0test",
        f"POST {ns}/configmaps",
        f"POST {ns}/secrets",
        f"POST {ns}/configmaps",
        f"POST {ns}/pods",
    ]
    assert calls[: len(expected)] == expected, calls
    rest = calls[len(expected) :]
    assert rest[-1] == f"PATCH {ns}/configmaps/{pod}-policy"
    assert set(rest[:-1]) == {f"GET {ns}/pods/{pod}"}  # polled until Running
    objs = [
        kube.get(r, "openshell", n)
        for r, n in (("secrets", f"{pod}-token"), ("configmaps", f"{pod}-policy"), ("pods", pod))
    ]
    anchor = kube.get("configmaps", "openshell", "openshell-anchor-srv0test")
    assert all(o["metadata"]["ownerReferences"][0]["uid"] == anchor["metadata"]["uid"] for o in objs)
    assert _invariants.check([*objs, _manifests.sandbox_network_policy(backend.settings)]) == []
    config = objs[1]["data"]
    assert (
        config["policy.yaml"] == POLICY
        and config["source"] == info.address
        and config["sandbox"] == "agent_1"
    )
    assert _state.read("agent_1")["backend"] == "kubernetes"


def test_exec_streams_codes_signals_and_stdin(backend):
    backend.create(SandboxSpec(name="ex"))
    p = backend.exec(
        "ex", ["sh", "-c", "echo out; echo err >&2; exit 3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert p.communicate(timeout=30) == (b"out\n", b"err\n") and p.returncode == 3
    assert p.pid and p.pid > 1
    p = backend.exec("ex", ["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.communicate(b"x" * 300000, timeout=30)[0] == b"x" * 300000 and p.returncode == 0  # stdin EOF
    p = backend.exec("ex", ["sh", "-c", "kill -TERM $$"], stdout=subprocess.DEVNULL)
    assert p.wait(30) == -signal.SIGTERM
    p = backend.exec("ex", ["sh", "-c", "exit 130"])
    assert p.wait(30) == 130  # an exit code is not a signal
    p = backend.exec("ex", ["sh", "-c", "sleep 0.2; echo ready; sleep 30"], stdout=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\n"  # streamed, not at the end
    p.send_signal(signal.SIGINT)
    assert p.wait(30) == -signal.SIGINT
    p = backend.exec(
        "ex",
        ["sh", "-c", "echo $A; pwd"],
        env={"A": "from-env"},
        cwd="/",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert p.communicate(timeout=30)[0] == b"from-env\n/\n"
    p = backend.exec("ex", ["no-such-command-x"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _out, err = p.communicate(timeout=30)
    assert p.returncode == 127 and b"no-such-command-x" in err
    with pytest.raises(subprocess.TimeoutExpired):
        backend.exec("ex", ["sleep", "5"]).wait(0.2)


def test_exec_request_carries_no_command_or_environment(kube, backend):
    backend.create(SandboxSpec(name="quiet"))
    backend.exec(
        "quiet", ["echo", "secret-arg-123"], env={"TOKEN": "secret-env-456"}, stdout=subprocess.DEVNULL
    ).wait(30)
    execs = [r for r in kube.requests if r.path.endswith("/exec")]
    assert execs and all(r.query["command"] == COMMAND for r in execs)
    assert all("secret-" not in str(r.query) for r in execs)


def test_pod_environment_routes_through_the_proxy_with_its_own_credential(kube, backend):
    info = backend.create(SandboxSpec(name="envs"))
    p = backend.exec("envs", ["sh", "-c", "echo $HTTPS_PROXY; echo $SSL_CERT_FILE"], stdout=subprocess.PIPE)
    proxy, ca = p.communicate(timeout=30)[0].decode().split()
    token = kube.pod_env(kube.get("pods", "openshell", info.details["pod"]))["OPENSHELL_TOKEN"]
    assert proxy == f"http://openshell:{token}@127.0.0.1:3128" and len(token) >= 40
    assert ca == "/etc/openshell/ca-bundle.pem"


def test_set_policy_patches_the_configmap_and_an_invalid_one_changes_nothing(kube, backend, tmp_path):
    info = backend.create(SandboxSpec.from_policy_file(_policy_file(tmp_path), name="pol"))
    cm = f"{info.details['pod']}-policy"
    new = POLICY.replace("api.example.com", "other.example.com")
    backend.set_policy("pol", new)
    assert kube.get("configmaps", "openshell", cm)["data"]["policy.yaml"] == new
    assert backend.get_policy("pol") == new
    patches = len(kube.calls("PATCH"))
    with pytest.raises(SandboxError, match="invalid"):
        backend.set_policy("pol", "network:\n  egress:\n    - action: allw\n")
    assert len(kube.calls("PATCH")) == patches
    assert kube.get("configmaps", "openshell", cm)["data"]["policy.yaml"] == new


def test_stop_deletes_the_pod_and_clears_its_source(kube, backend):
    info = backend.create(SandboxSpec(name="st"))
    stopped = backend.stop("st")
    assert stopped.state == "stopped"
    assert kube.get("pods", "openshell", info.details["pod"]) is None
    assert "source" not in kube.get("configmaps", "openshell", f"{info.details['pod']}-policy")["data"]
    with pytest.raises(SandboxError, match="stopped"):
        backend.exec("st", ["true"])


def test_destroy_leaves_nothing(kube, backend):
    backend.create(SandboxSpec(name="gone"))
    backend.destroy("gone")
    assert _leftovers(kube, "gone") == []
    assert _state.read("gone") is None
    assert "gone" not in [i.name for i in backend.list()]


def test_cleanup_by_label_removes_orphans_and_ended_pods(kube, backend):
    a = backend.create(SandboxSpec(name="orphan"))
    backend.create(SandboxSpec(name="ended"))
    kept = backend.create(SandboxSpec(name="kept"))
    _state.directory("orphan").joinpath("sandbox.json").unlink()  # a create whose record was lost
    pod = kube.get("pods", "openshell", a.details["pod"])
    assert pod is not None
    ended = kube.get("pods", "openshell", _state.read("ended")["pod"])
    kube.patch("pods", "openshell", ended["metadata"]["name"], {"status": {"phase": "Failed"}})
    # another server's sandbox in the same namespace is not ours to clean
    other = KubernetesBackend(backend.settings.with_changes(server_id="srv1other"))
    cleaned = backend.cleanup()
    assert "ended" in cleaned and any(c.startswith("pod/sb-orphan") for c in cleaned)
    assert _leftovers(kube, "orphan") == [] and _leftovers(kube, "ended") == []
    assert kube.get("pods", "openshell", kept.details["pod"]) is not None
    assert other.cleanup() == []


def test_reattach_after_a_server_restart(kube, settings, backend):
    info = backend.create(SandboxSpec(name="keep"))
    restarted = KubernetesBackend(settings)  # a new process: nothing in memory
    assert restarted.status("keep").state == "running"
    p = restarted.exec("keep", ["echo", "again"], stdout=subprocess.PIPE)
    assert p.communicate(timeout=30)[0] == b"again\n"
    # the state directory lost too: the pod's labels bring the record back
    _state.directory("keep").joinpath("sandbox.json").unlink()
    listed = {i.name: i for i in KubernetesBackend(settings).list()}
    assert listed["keep"].state == "running" and listed["keep"].details["reattached"]
    assert listed["keep"].details["pod"] == info.details["pod"]
    assert restarted.exec("keep", ["true"]).wait(30) == 0
    restarted.destroy("keep")
    assert _leftovers(kube, "keep") == []


def test_deleting_the_anchor_collects_every_sandbox_object(kube, backend):
    backend.create(SandboxSpec(name="owned"))
    kube.delete("configmaps", "openshell", "openshell-anchor-srv0test")
    assert _leftovers(kube, "owned") == []


@pytest.mark.parametrize(
    "method,path,status,words",
    [
        ("POST", r"/pods$", 403, ["forbidden (403)", "Role openshell-server"]),
        ("POST", r"/secrets$", 409, ["already exists (409)", "openshell sandbox gc"]),
        ("GET", r"/services/openshell-proxy$", 404, ["not found (404)", "openshell k8s install"]),
    ],
)
def test_api_errors_are_explained_and_leave_nothing(kube, backend, method, path, status, words):
    kube.fail(method, path, status)
    with pytest.raises(SandboxError) as err:
        backend.create(SandboxSpec(name="err"))
    for word in words:
        assert word in str(err.value)
    assert _leftovers(kube, "err") == [] and _state.read("err") is None


def test_pod_never_running_times_out_with_its_state_and_leaves_nothing(kube, settings):
    kube.pods.hold = True
    b = KubernetesBackend(settings.with_changes(start_timeout=1.0))
    started = time.monotonic()
    with pytest.raises(SandboxError, match=r"not Running within 1 s \(phase Pending\)"):
        b.create(SandboxSpec(name="slow"))
    assert time.monotonic() - started < 10
    assert _leftovers(kube, "slow") == [] and _state.read("slow") is None


def test_image_that_cannot_be_pulled_fails_at_once_and_says_how_to_provide_it(kube, backend):
    kube.pods.image_error = "ErrImageNeverPull"
    started = time.monotonic()
    with pytest.raises(SandboxError, match=r"ErrImageNeverPull.*openshell cluster up"):
        backend.create(SandboxSpec(name="img"))
    assert time.monotonic() - started < 5
    assert _leftovers(kube, "img") == []


def test_host_paths_are_refused(backend, tmp_path):
    with pytest.raises(SandboxError, match="cannot mount host paths"):
        backend.create(SandboxSpec(name="ws", workspace=tmp_path))
