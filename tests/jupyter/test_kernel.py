"""The OpenShell kernel driven through jupyter_client: start, execute, interrupt, restart, shutdown.

Real provisioner, real sandbox, real ipykernel. Also: the kernel sees no host secrets and cannot reach a
host TCP port, a sandbox that cannot start fails the start with its reason, and nothing is left behind.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess

import psutil
import pytest
from jupyter_client.manager import AsyncKernelManager

from jupyter_openshell.kernel import pool
from jupyter_openshell.kernel.kernelspec import install
from jupyter_openshell.kernel.session import kernels_dir
from jupyter_openshell.services.policies import PolicyService as PolicyOps


@pytest.fixture
def kernelspecs(tmp_path, monkeypatch, workspace):
    """Kernelspecs 'openshell' (no pool) and 'openshell-bad' (a policy that does not validate)."""
    prefix = tmp_path / "prefix"
    install(prefix=str(prefix), pool_size=0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("network:\n  egress:\n    - host: example.com\n      action: perhaps\n")
    install(prefix=str(prefix), name="openshell-bad", policy_file=str(bad), pool_size=0)
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    yield workspace
    pool.shutdown_pools()


async def _run(kc, code: str, timeout: float = 30) -> tuple[dict, str, list[dict]]:
    out: list[str] = []
    msgs: list[dict] = []

    def hook(msg):
        msgs.append(msg)
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])

    reply = await kc.execute_interactive(code, timeout=timeout, output_hook=hook)
    return reply["content"], "".join(out), msgs


def _sandbox_names() -> set[str]:
    from jupyter_openshell.runtime import get_backend

    return {i.name for i in get_backend().list()}


async def test_kernel_lifecycle_interrupt_restart_shutdown(kernelspecs, monkeypatch):
    monkeypatch.setenv("JUPYTER_TOKEN", "host-secret-token")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-host-secret")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    host_port = listener.getsockname()[1]
    km = AsyncKernelManager(kernel_name="openshell")
    await km.start_kernel(cwd=str(kernelspecs))
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        box = km.provisioner.box
        name, shim_pid = box.name, None
        from jupyter_openshell.runtime import get_backend

        shim_pid = get_backend().status(name).details["pid"]
        assert name in _sandbox_names()

        code = (
            "import os, socket, json\n"
            f"s = socket.socket(); s.settimeout(2)\n"
            f"try:\n    s.connect(('127.0.0.1', {host_port})); print('REACHED')\n"
            "except OSError as e:\n    print('blocked', type(e).__name__)\n"
            "p = socket.create_connection(('127.0.0.1', 3128))\n"
            f"p.sendall(b'GET http://127.0.0.1:{host_port}/api HTTP/1.1\\r\\n"
            f"Host: 127.0.0.1:{host_port}\\r\\nConnection: close\\r\\n\\r\\n')\n"
            "print('proxy said', p.recv(200).split(b'\\r\\n')[0].decode())\n"
            "open('written.txt', 'w').write('hi')\n"
            "print(json.dumps({k: v for k, v in os.environ.items()}))\n"
        )
        content, out, _ = await _run(kc, code)
        assert content["status"] == "ok", out
        assert "REACHED" not in out and "blocked" in out and "proxy said HTTP/1.1 403" in out
        assert "host-secret-token" not in out and "sk-host-secret" not in out
        assert "JPY_" not in out and "JUPYTER_TOKEN" not in out
        assert (kernelspecs / "written.txt").read_text() == "hi"  # the workspace is the notebook's dir

        # the sandboxed code cannot widen its own policy (policy_edits is off by default)
        policy_before = PolicyOps(name).text()
        content, _, _ = await _run(kc, "%policy allow GET http://example.com/")
        assert content["status"] == "error"
        attack = (
            "import os\nfrom jupyter_openshell.kernel.broker import call\n"
            "sock = os.environ['OPENSHELL_KERNEL_BROKER']\n"
            "try:\n    call(sock, 'put', text='network: {egress: [{action: allow}]}')\n"
            "except Exception as e:\n    print('refused:', e)\n"
            "print(call(sock, 'show')['version'])"
        )
        content, out, _ = await _run(kc, attack)
        assert "refused: policy changes from inside sandbox" in out
        assert PolicyOps(name).text() == policy_before

        await _run(kc, "x = 42")
        kc.execute("import time\nwhile True:\n    time.sleep(0.01)")
        await asyncio.sleep(1.0)
        await km.interrupt_kernel()
        reply = await kc.get_shell_msg(timeout=20)
        while reply["msg_type"] != "execute_reply":
            reply = await kc.get_shell_msg(timeout=20)
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
        content, out, _ = await _run(kc, "print(x)")
        assert out.strip() == "42"  # the interrupted kernel lives on

        await km.restart_kernel()
        await kc.wait_for_ready(timeout=60)
        _, out, _ = await _run(kc, "print('x' in globals())")
        assert out.strip() == "False"
        assert km.provisioner.box.name == name  # a restart keeps the sandbox (and its workspace)
    finally:
        kc.stop_channels()
        await km.shutdown_kernel()
        listener.close()
    assert name not in _sandbox_names()
    assert shim_pid is None or not psutil.pid_exists(shim_pid)
    assert not box.home.exists()
    leftovers = [
        p for p in psutil.process_iter(["cmdline"]) if any(name in a for a in p.info["cmdline"] or [])
    ]
    assert leftovers == []


async def test_sandbox_that_cannot_start_fails_the_start_with_its_reason(kernelspecs):
    before = set(os.listdir(kernels_dir()))
    km = AsyncKernelManager(kernel_name="openshell-bad")
    with pytest.raises(RuntimeError) as err:
        await asyncio.wait_for(km.start_kernel(cwd=str(kernelspecs)), 30)
    assert "action" in str(err.value) and "perhaps" in str(err.value)
    assert set(os.listdir(kernels_dir())) == before


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        (None, "No such file"),  # the provisioner config names a policy file that is not there
        ("filesystem:\n  read_only: [/nonexistent-openshell-data]\n", "does not exist on this host"),
    ],
    ids=["missing-file", "valid-but-unstartable"],
)
async def test_kernel_start_fails_fast_with_a_readable_reason(
    tmp_path, monkeypatch, workspace, policy, reason
):
    """Not a start-up timeout: the start fails well within the 30 s the kernel would have to come up."""
    prefix = tmp_path / "prefix"
    path = tmp_path / "policy.yaml"
    if policy is not None:
        path.write_text(policy)
    install(prefix=str(prefix), name="openshell-broken", policy_file=str(path), pool_size=0)
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    before_dirs, before_boxes = set(os.listdir(kernels_dir())), _sandbox_names()
    km = AsyncKernelManager(kernel_name="openshell-broken")
    with pytest.raises(RuntimeError) as err:
        await asyncio.wait_for(km.start_kernel(cwd=str(workspace)), 15)
    message = str(err.value)
    assert message.startswith("OpenShell:") and reason in message and str(path) in message, message
    assert set(os.listdir(kernels_dir())) == before_dirs and _sandbox_names() == before_boxes


async def test_warm_pool_hands_over_a_started_kernel(kernelspecs):
    from jupyter_openshell.kernel.session import KernelConfig

    km1 = AsyncKernelManager(kernel_name="openshell")
    km1.kernel_spec.metadata["kernel_provisioner"]["config"]["pool_size"] = 1
    await km1.start_kernel(cwd=str(kernelspecs))
    config = km1.provisioner._config
    assert isinstance(config, KernelConfig)
    for _ in range(600):
        if pool.pooled_count(config):
            break
        await asyncio.sleep(0.1)
    assert pool.pooled_count(config) == 1
    pooled = pool._pools[config.key()].ready[0]
    km2 = AsyncKernelManager(kernel_name="openshell")
    km2.kernel_spec.metadata["kernel_provisioner"]["config"]["pool_size"] = 1
    await km2.start_kernel(cwd=str(kernelspecs))
    try:
        assert km2.provisioner.box is pooled
        kc = km2.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=30)
        _, out, _ = await _run(kc, "print(6 * 7)")
        assert out.strip() == "42"
        kc.stop_channels()
        assert km1.session.key != km2.session.key  # every kernel has its own key
    finally:
        await km2.shutdown_kernel(now=True)
        await km1.shutdown_kernel(now=True)
        pool.shutdown_pools()
    assert pooled.name not in _sandbox_names()


def test_kernel_sandboxes_of_a_dead_host_are_cleaned_up(workspace):
    from jupyter_openshell.kernel.session import KernelConfig, KernelSandbox, cleanup_stale

    alive = KernelSandbox.start(KernelConfig(workspace=str(workspace)))
    orphan = KernelSandbox.start(KernelConfig(workspace=str(workspace)))
    try:
        # what remains when the server that started it was killed: its broker gone, its owner dead
        orphan.broker.stop()
        gone = subprocess.Popen(["true"])
        gone.wait()
        (orphan.home / "owner").write_text(f"{gone.pid} 0")
        assert orphan.name in cleanup_stale()
        assert orphan.name not in _sandbox_names() and not orphan.home.exists()
        assert alive.name in _sandbox_names() and alive.poll() is None
    finally:
        alive.destroy()
        orphan.destroy()


UNPRIVILEGED_SCRIPT = """
import os, sys
from jupyter_client.manager import start_new_kernel
from jupyter_openshell.kernel.kernelspec import install
from jupyter_openshell.proxy import ProxyClient
prefix = os.path.join(os.environ["HOME"], "prefix")
install(prefix=prefix, pool_size=0)
os.environ["JUPYTER_PATH"] = prefix + "/share/jupyter"
try:
    km, kc = start_new_kernel(kernel_name="openshell", cwd=sys.argv[1])
    out = []
    hook = lambda m: out.append(m["content"].get("text", ""))
    reply = kc.execute_interactive("import os; print(os.getuid(), os.getcwd())", timeout=60, output_hook=hook)
    kc.stop_channels()
    km.shutdown_kernel()
    print("RESULT", reply["content"]["status"], "".join(out).strip())
finally:
    ProxyClient().stop()
"""


def test_kernel_works_for_an_unprivileged_user(scratch):
    import subprocess
    import sys

    from jupyter_openshell.proxy import ProxyClient

    if os.geteuid() != 0:
        pytest.skip("already unprivileged: every other test covers this path")
    home, ws = scratch("unpriv-", owner=65534), scratch("unpriv-ws-", owner=65534)
    state = home / "state"
    script = home / "run.py"
    script.write_text(UNPRIVILEGED_SCRIPT)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "OPENSHELL_STATE_DIR": str(state)}
    try:
        proc = subprocess.run(
            ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", sys.executable, script, ws],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert "RESULT ok 1000 /workspace" in proc.stdout, proc.stdout + proc.stderr
        assert not ProxyClient(state).is_running()
    finally:
        ProxyClient(state).stop()  # also when the script was killed or failed before its own stop


def test_kernelspec_resources_reach_the_sandbox(workspace):
    from jupyter_openshell.kernel.session import KernelConfig, KernelSandbox, KernelStartError
    from jupyter_openshell.runtime import get_backend

    box = KernelSandbox.start(KernelConfig(workspace=str(workspace), resources=(("pids", 77),)))
    try:
        info = get_backend().status(box.name)
        assert info.limits.get("pids") == 77, info.limits
    finally:
        box.destroy()
    with pytest.raises(KernelStartError, match=r"resources\.pids"):
        KernelSandbox.start(KernelConfig(workspace=str(workspace), resources=(("pids", "lots"),)))
