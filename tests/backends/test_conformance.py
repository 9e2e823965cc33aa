"""The backend contract, run against every backend (local, docker): what a caller of `Backend` may rely on.

create; exec with streamed stdout/stderr, the caller's own fds, stdin, exit codes; SIGINT/SIGTERM/SIGKILL to
the command; a policy change applied to the sandbox's next request (through the real proxy to a local
upstream), by the backend and by the policy service; the kernel channel (a kernel's own sockets reached from
the host, a refusal for a sandbox made without one, a kernel that exits said so); the OpenShell kernel
started, interrupted, restarted and shut down through jupyter_client with the provisioner; `%%sandbox`; the
REST lifecycle (with the sandbox's backend, image, enforcement per layer and policy version in its JSON);
and destroy leaving no container, process, channel or state.
Each test's assertion is one a backend that broke the contract would fail (wrong code, lost output, a
request that got through, a leftover).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from jupyter_client.manager import KernelManager, start_new_async_kernel

from jupyter_openshell import paths
from jupyter_openshell.kernel.kernelspec import install
from jupyter_openshell.runtime import SandboxError, SandboxSpec, backend_of
from jupyter_openshell.services.policies import PolicyService

ALLOW_OK = """\
network:
  egress:
    - host: "api.example.com"
      ports: [{port}]
      paths:
        - path: "/ok/*"
          methods: ["GET"]
      addresses: ["127.0.0.1"]  # the upstream lives on loopback, which the proxy refuses unless named
      action: allow
    - action: deny
"""
DENY_ALL = "network:\n  egress:\n    - action: deny\n"


@pytest.fixture
def box(backend):
    name = f"cf-{uuid.uuid4().hex[:6]}"
    backend.create(SandboxSpec(name=name, env={"FROM_SPEC": "spec-value"}))
    yield name
    if name in {i.name for i in backend.list()}:
        backend.destroy(name)


def _leftovers(name: str, created: float) -> list[str]:
    """What of sandbox `name` is still on the host: its state, a container, a process naming it."""
    found = []
    if (paths.state_dir() / "sandboxes" / name).exists():
        found.append("state directory")
    with open("/proc/self/mountinfo") as fh:
        if f"/sandboxes/{name}/" in fh.read():
            found.append("mount")
    try:
        import docker

        client = docker.from_env()
        label = f"org.jupyter-openshell.sandbox={name}"
        found += [
            f"container {c.short_id}" for c in client.containers.list(all=True, filters={"label": label})
        ]
    except Exception:  # no SDK or engine: then no container either
        pass
    for pid in Path("/proc").iterdir():
        if pid.name.isdigit():
            try:
                cmdline = (pid / "cmdline").read_bytes()
            except OSError:
                continue
            if f"sandboxes/{name}/".encode() in cmdline or f"openshell-{name}-".encode() in cmdline:
                found.append(f"process {pid.name}")
    return found


def test_exec_streams_codes_stdin_and_the_callers_fd(backend, box, tmp_path):
    proc = backend.exec(
        box,
        ["sh", "-c", "read l; echo got:$l; echo $FROM_SPEC $EXTRA; pwd; echo oops >&2; exit 7"],
        env={"EXTRA": "x"},
        cwd="/tmp",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(b"hello\n", timeout=30)
    assert (proc.returncode, out.decode().split("\n")[:3], err) == (
        7,
        ["got:hello", "spec-value x", "/tmp"],
        b"oops\n",
    )
    # streaming: the first line arrives while the command still runs
    proc = backend.exec(box, ["sh", "-c", "echo first; sleep 3; echo second"], stdout=subprocess.PIPE)
    started = time.monotonic()
    assert proc.stdout.readline() == b"first\n"
    assert time.monotonic() - started < 2.5
    assert proc.communicate(timeout=30)[0] == b"second\n" and proc.returncode == 0
    target = tmp_path / "out.txt"
    with open(target, "wb") as fh:  # the command writes the caller's own fd
        assert backend.exec(box, ["echo", "direct"], stdout=fh).wait(30) == 0
    assert target.read_bytes() == b"direct\n"
    missing = backend.exec(box, ["no-such-command-xyz"], stderr=subprocess.PIPE)
    assert missing.communicate(timeout=30)[1].count(b"no-such-command-xyz") == 1 and missing.returncode == 127


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_signals_reach_the_command(backend, box, sig):
    proc = backend.exec(box, ["sleep", "60"], stdout=subprocess.DEVNULL)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(0.3)
    proc.send_signal(sig)
    assert proc.wait(10) == -sig
    # a shell that traps SIGINT sees it (the signal reaches the command, not the sandbox)
    trap = backend.exec(
        box,
        ["sh", "-c", "trap 'echo trapped; exit 3' INT; echo ready; sleep 60 >/dev/null & wait"],
        stdout=subprocess.PIPE,
    )
    assert trap.stdout.readline() == b"ready\n"
    trap.send_signal(signal.SIGINT)
    assert trap.communicate(timeout=10)[0] == b"trapped\n" and trap.returncode == 3


def _curl(backend, name: str, url: str) -> str:
    proc = backend.exec(
        name,
        ["curl", "-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, _ = proc.communicate(timeout=30)
    return out.decode()


def test_policy_change_applies_to_the_next_request(backend, tmp_path, upstream):
    policy = tmp_path / "allow.yaml"
    policy.write_text(ALLOW_OK.format(port=upstream.port))
    name = f"cf-pol-{uuid.uuid4().hex[:6]}"
    backend.create(SandboxSpec.from_policy_file(policy, name=name))
    try:
        upstream.clear()
        url = f"http://api.example.com:{upstream.port}/ok/1"
        assert _curl(backend, name, url) == "200"
        assert _curl(backend, name, f"http://api.example.com:{upstream.port}/other") == "403"
        backend.set_policy(name, DENY_ALL)
        deadline = time.monotonic() + 10
        while (code := _curl(backend, name, url)) == "200" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert code == "403"
        # the same one way through the policy service (what %policy, the CLI and REST call)
        assert PolicyService(name).put(ALLOW_OK.format(port=upstream.port))["version"]
        deadline = time.monotonic() + 10
        while (code := _curl(backend, name, url)) == "403" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert code == "200"
        assert [r.path for r in upstream.requests].count("/ok/1") >= 2
        assert "/other" not in [r.path for r in upstream.requests]
        # nothing but the proxy: a direct connection to the upstream fails
        direct = backend.exec(name, ["curl", "-sS", "--noproxy", "*", "-m", "5", url], stderr=subprocess.PIPE)
        assert direct.wait(30) != 0
    finally:
        backend.destroy(name)


def test_destroy_leaves_nothing(backend):
    name = f"cf-rm-{uuid.uuid4().hex[:6]}"
    info = backend.create(SandboxSpec(name=name))
    assert backend_of(name).name == backend.name
    assert _leftovers(name, info.created), "the check must see a live sandbox"  # control
    daemon = backend.exec(
        name, ["sh", "-c", "(setsid sleep 600 </dev/null >/dev/null 2>&1 &); echo ok"], stdout=subprocess.PIPE
    )
    assert daemon.communicate(timeout=30)[0] == b"ok\n"
    backend.destroy(name)
    assert _leftovers(name, info.created) == []
    assert name not in {i.name for i in backend.list()}


def test_kernel_channel(backend, tmp_path):
    """A kernel started by hand on the backend's channel serves on the host side of it; what the channel
    leaves goes with the sandbox."""
    from jupyter_client.blocking import BlockingKernelClient

    plain = f"cf-nok-{uuid.uuid4().hex[:6]}"
    backend.create(SandboxSpec(name=plain))
    try:
        with pytest.raises(SandboxError, match=r"without a kernel channel|cannot run kernels"):
            backend.kernel_channel(plain)  # control: a sandbox made without one has none
    finally:
        backend.destroy(plain)
    name = f"cf-kc-{uuid.uuid4().hex[:6]}"
    backend.create(SandboxSpec(name=name, kernel=True))
    try:
        channel = backend.kernel_channel(name)
        key = uuid.uuid4().hex
        connection = {**channel.endpoint(), "key": key, "signature_scheme": "hmac-sha256"}
        argv, env = channel.launch(connection)
        kernel = [*channel.runner, "jupyter_openshell.kernel.inside", *argv, "--HistoryManager.enabled=False"]
        proc = backend.exec(name, kernel, env={**channel.env, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
        channel.wait_ready(proc, 60)
        client = BlockingKernelClient()
        ports = channel.relay_ports
        host = {f"{c}_port": (ports[c] if ports else p) for c, p in
                (("shell", 1), ("iopub", 2), ("stdin", 3), ("control", 4), ("hb", 5))}
        base = channel.relay_base
        client.load_connection_info({**host, "transport": "tcp" if ports else "ipc",
                                     "ip": base.removeprefix("tcp://"), "key": key.encode(),
                                     "signature_scheme": "hmac-sha256"})
        client.start_channels()
        try:
            client.wait_for_ready(timeout=60)
            _, out = _run(client, "import os; print('kernel in', os.environ['OPENSHELL_SANDBOX'])")
            assert out.strip() == f"kernel in {name}"
        finally:
            client.stop_channels()
        proc.kill()
        proc.wait(10)
        # a kernel that exits while starting is said so, not waited for
        argv, env = channel.launch(connection)
        dead = backend.exec(name, ["sh", "-c", "exit 3"], stdout=subprocess.DEVNULL)
        with pytest.raises(SandboxError, match="exited with code 3"):
            channel.wait_ready(dead, 30)
    finally:
        backend.destroy(name)
    assert _leftovers(name, 0) == []
    if channel.host_dir is not None:
        assert not channel.host_dir.exists()


def test_kernel_channel_follows_no_link_the_sandbox_plants(backend, tmp_path):
    """ATTACK: code in the sandbox (e.g. before a kernel restart) replaces the channel's connection file with
    a link to a host file; the host's next launch must neither write nor hand over that file. CONTROL: the
    planted link does reach the host file when followed."""
    name = f"cf-kl-{uuid.uuid4().hex[:6]}"
    backend.create(SandboxSpec(name=name, kernel=True))
    try:
        channel = backend.kernel_channel(name)
        if channel.host_dir is None:
            pytest.skip(f"the {backend.name} backend's kernel channel has no directory on the host")
        victim = tmp_path / "victim"
        planted = channel.host_dir / "connection.json"

        def plant() -> None:
            victim.write_text("host file\n")
            link = ["ln", "-sf", str(victim), f"{channel.inside_dir}/connection.json"]
            assert backend.exec(name, link).wait(30) == 0 and planted.is_symlink()

        plant()
        with open(planted, "w") as fh:  # CONTROL: following the link writes the host file
            fh.write("x")
        assert victim.read_text() == "x"
        plant()
        before = victim.stat()
        channel.launch({**channel.endpoint(), "key": "k", "signature_scheme": "hmac-sha256"})
        after = victim.stat()
        assert victim.read_text() == "host file\n"
        assert (after.st_uid, after.st_mode) == (before.st_uid, before.st_mode)
        assert planted.is_file() and not planted.is_symlink()
    finally:
        backend.destroy(name)


def _kernelspec(prefix: Path, backend_name: str, workspace: Path) -> str:
    name = f"openshell-{backend_name}"
    install(prefix=str(prefix), name=name, pool_size=0, backend=backend_name, workspace=str(workspace))
    return name


def _run(kc, code: str, timeout: float = 60) -> tuple[dict, str]:
    out: list[str] = []

    def hook(msg):
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    reply = kc.execute_interactive(code, timeout=timeout, output_hook=hook)
    return reply["content"], "".join(out)


def test_kernel_start_interrupt_restart_shutdown(backend_name, tmp_path, monkeypatch, workspace):
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    km = KernelManager(kernel_name=_kernelspec(tmp_path, backend_name, workspace))
    km.start_kernel(cwd=str(workspace))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        name = km.provisioner.box.name
        assert backend_of(name).name == backend_name
        content, out = _run(kc, "import os; x = 41; print(os.environ['OPENSHELL_SANDBOX'], os.getuid() != 0)")
        assert content["status"] == "ok" and out.split() == [name, "True"], out
        kc.execute("import time; time.sleep(60)")
        time.sleep(1.0)
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=20)
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
        content, out = _run(kc, "print(x + 1)")
        assert out.strip() == "42"
        km.restart_kernel(now=True)
        kc.wait_for_ready(timeout=60)
        content, out = _run(kc, "print('x' in globals())")
        assert out.strip() == "False"  # a fresh kernel ...
        assert km.provisioner.box.name == name  # ... in the same sandbox
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert _leftovers(name, 0) == []


async def test_sandbox_magic(backend_name, workspace, monkeypatch):
    monkeypatch.setenv("OPENSHELL_BACKEND", backend_name)  # the host kernel's default backend
    km, kc = await start_new_async_kernel(kernel_name="python3", cwd=str(workspace))
    name = f"magic-{uuid.uuid4().hex[:6]}"
    try:
        msgs: list[dict] = []
        reply = await kc.execute_interactive(
            "%load_ext jupyter_openshell", timeout=60, output_hook=msgs.append
        )
        assert reply["content"]["status"] == "ok"
        code = (
            f"%%sandbox {name} --backend {backend_name}\n"
            "import os\nprint('inside', os.environ['OPENSHELL_SANDBOX'])"
        )
        reply = await kc.execute_interactive(code, timeout=120, output_hook=msgs.append)
        texts = "".join(m["content"].get("text", "") for m in msgs if m["msg_type"] == "stream")
        assert reply["content"]["status"] == "ok", texts
        assert f"inside {name}" in texts
        assert backend_of(name).name == backend_name
        reply = await kc.execute_interactive(f"%sandbox rm {name}", timeout=60, output_hook=msgs.append)
        assert reply["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
    assert _leftovers(name, 0) == []


@pytest.fixture
def jp_server_config(backend_name):
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_openshell": True}},
        "SandboxManager": {"backend": backend_name},
    }


async def test_rest_lifecycle(backend_name, jp_fetch):
    async def api(*parts, method="GET", body=None):
        resp = await jp_fetch(
            "openshell", "api", *parts, method=method, body=None if body is None else json.dumps(body)
        )
        return resp.code, json.loads(resp.body or b"{}")

    name = f"rest-{uuid.uuid4().hex[:6]}"
    code, info = await api("sandboxes", method="POST", body={"name": name})
    assert code == 201 and info["name"] == name
    assert backend_of(name).name == backend_name
    code, got = await api("sandboxes", name)
    assert got["state"] == "running"
    # what the sandbox is, the same keys for every backend
    assert got["backend"] == backend_name and got["created"] == info["created"]
    assert (got["image"] is None) == (backend_name == "local")
    assert {"network", "filesystem", "syscalls", "user", "resources"} <= set(got["enforcement"])
    from jupyter_openshell.services.proxy import registrations

    in_force = registrations()[name]["policy_version"]
    assert got["policy_version"] == in_force and len(in_force) == 12
    code, out = await api(
        "sandboxes",
        name,
        "exec",
        method="POST",
        body={"argv": ["python3", "-c", "import sys; print(sys.stdin.read().upper())"], "stdin": "hello"},
    )
    assert out["returncode"] == 0 and out["stdout"].strip() == "HELLO"
    code, _ = await api("sandboxes", name, method="DELETE")
    assert code in (200, 204)
    assert _leftovers(name, 0) == []
