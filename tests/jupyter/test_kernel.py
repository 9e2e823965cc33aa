"""The OpenShell kernel driven through jupyter_client: start, execute, interrupt, restart, shutdown.

Real provisioner, real sandbox, real ipykernel. Also: the kernel sees no host secrets and cannot reach a
host TCP port, a sandbox that cannot start fails the start with its reason, and nothing is left behind.
"""

from __future__ import annotations

import asyncio
import os
import socket

import psutil
import pytest
from jupyter_client.manager import AsyncKernelManager

from jupyter_openshell.kernel import pool
from jupyter_openshell.kernel.kernelspec import install
from jupyter_openshell.kernel.session import kernels_dir


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

        shim_pid = get_backend().status(name).pid
        assert name in _sandbox_names()

        code = (
            "import os, socket, json\n"
            f"s = socket.socket(); s.settimeout(2)\n"
            f"try:\n    s.connect(('127.0.0.1', {host_port})); print('REACHED')\n"
            "except OSError as e:\n    print('blocked', type(e).__name__)\n"
            "open('written.txt', 'w').write('hi')\n"
            "print(json.dumps({k: v for k, v in os.environ.items()}))\n"
        )
        content, out, _ = await _run(kc, code)
        assert content["status"] == "ok", out
        assert "REACHED" not in out and "blocked" in out
        assert "host-secret-token" not in out and "sk-host-secret" not in out
        assert "JPY_" not in out and "JUPYTER_TOKEN" not in out
        assert (kernelspecs / "written.txt").read_text() == "hi"  # the workspace is the notebook's dir

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
