"""The OpenShell kernel on the Kubernetes backend, through the provisioner (kernelspec config
`backend: kubernetes`), against the stand-in API server: the sandbox pod is created, the kernel is
launched by exec with its connection file in the exec stream (not the URL), its connection comes back on
the exec stream once bound (the response-address pattern, without a route from pod to server), the
host-side relay connects to the pod's TCP ports, interrupt travels as a message, restart relaunches in the
same pod, shutdown deletes it.

The stand-in runs the kernel on this host, bound to the pod's loopback stand-in address: this shows the
request sequence and the wiring, not isolation (a real kernel pod runs only where a cluster is given).
"""

from __future__ import annotations

import json
import time

import pytest
from jupyter_client import KernelManager

from jupyter_openshell.kernel.kernelspec import install
from jupyter_openshell.runtime.kubernetes._exec import COMMAND
from jupyter_openshell.runtime.kubernetes._kernel_channel import TcpKernelChannel
from jupyter_openshell.runtime.kubernetes._settings import KERNEL_PORTS


@pytest.fixture
def k8s_env(kube, settings, monkeypatch):
    monkeypatch.setenv("OPENSHELL_K8S_KUBECONFIG", settings.kubeconfig)
    monkeypatch.setenv("OPENSHELL_K8S_SERVER_ID", settings.server_id)
    return kube


def _run(kc, code: str) -> tuple[dict, str]:
    out: list[str] = []
    reply = kc.execute_interactive(
        code,
        timeout=60,
        output_hook=lambda m: out.append(m["content"].get("text", "")) if m["msg_type"] == "stream" else None,
    )
    return reply["content"], "".join(out)


def test_tcp_ports_agree_with_the_network_policy():
    endpoint = TcpKernelChannel("10.0.0.7").endpoint()
    assert tuple(endpoint[f"{c}_port"] for c in ("shell", "iopub", "stdin", "control", "hb")) == KERNEL_PORTS


def test_kernel_pod_start_interrupt_restart_shutdown(k8s_env, tmp_path, monkeypatch):
    kube = k8s_env
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    install(prefix=str(tmp_path), name="openshell-k8s", pool_size=0, backend="kubernetes")
    km = KernelManager(kernel_name="openshell-k8s")
    km.start_kernel(cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        box = km.provisioner.box
        pod = kube.get("pods", "openshell", f"{_pod(kube, box.name)}")
        assert pod["status"]["phase"] == "Running"
        assert km.get_connection_info()["transport"] == "ipc"  # clients talk to the relay only
        content, out = _run(kc, "import os; x = 41; print(os.environ['OPENSHELL_SANDBOX'])")
        assert content["status"] == "ok" and out.strip() == box.name
        execs = [r for r in kube.requests if r.path.endswith("/exec")]
        assert execs and all(r.query["command"] == COMMAND for r in execs)
        assert all(box.key.decode() not in json.dumps(r.query) for r in execs)  # the kernel key: not in URLs
        kc.execute("import time; time.sleep(60)")
        time.sleep(1.0)
        km.interrupt_kernel()  # interrupt_mode message: a control message through the relay
        reply = kc.get_shell_msg(timeout=20)
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
        assert _run(kc, "print(x + 1)")[1].strip() == "42"
        km.restart_kernel(now=True)
        kc.wait_for_ready(timeout=60)
        assert _run(kc, "print('x' in globals())")[1].strip() == "False"
        assert km.provisioner.box.name == box.name  # the same pod
        assert len(kube.calls("POST", r"/pods$")) == 1
        name = box.name
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert kube.objects("pods", "openshell", f"openshell.io/sandbox={name}") == []
    assert kube.objects("configmaps", "openshell", f"openshell.io/sandbox={name}") == []


def _pod(kube, name: str) -> str:
    pods = kube.objects("pods", "openshell", f"openshell.io/sandbox={name}")
    assert len(pods) == 1
    return pods[0]["metadata"]["name"]
