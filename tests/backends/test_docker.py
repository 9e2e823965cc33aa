"""What only the docker backend has: its seccomp profile (the local filter's, by construction), the
container's settings (each wall the engine keeps), images that cannot run a sandbox or a kernel refused
with what to add, GPU requests on a host without one, and `gc` of containers whose record is gone.
Each test has its control: the comparison that can fail, the same image with what was missing, the
container that is there before `gc`.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest

from jupyter_openshell import paths
from jupyter_openshell.runtime import SandboxError, SandboxSpec, _seccomp, get_backend
from jupyter_openshell.runtime.docker import _profile


def test_profile_compiles_to_the_local_filter():
    """The profile expresses exactly the local filter: libseccomp makes the same BPF program of both."""
    profile = _profile.profile()
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    assert profile["architectures"] == [_profile.native_arch()]  # other architectures (x32 too) killed
    local = _seccomp.compile_bpf()
    assert _seccomp.compile_bpf(_profile.rules_of(profile)) == local
    # control: dropping rules (ptrace's, or the socket ones) changes the program
    for dropped in ("ptrace", "socket"):
        fewer = dict(profile, syscalls=[e for e in profile["syscalls"] if e["names"] != [dropped]])
        assert _seccomp.compile_bpf(_profile.rules_of(fewer)) != local
    errnos = {e["names"][0]: e["errnoRet"] for e in profile["syscalls"] if "args" not in e}
    assert errnos["ptrace"] == 1 and errnos["clone3"] == 38  # EPERM; ENOSYS (glibc falls back to clone)


@pytest.fixture
def docker(docker_ready, conformance_state):
    import docker as sdk

    return sdk.from_env()


@pytest.fixture
def sandbox(docker):
    backend = get_backend("docker")
    names: list[str] = []

    def create(**spec) -> str:
        name = f"dk-{uuid.uuid4().hex[:6]}"
        backend.create(SandboxSpec(name=name, **spec))
        names.append(name)
        return name

    yield create
    for name in names:
        if name in {i.name for i in backend.list()}:
            backend.destroy(name)


def _sh(name: str, script: str) -> tuple[int, str]:
    proc = get_backend("docker").exec(
        name, ["sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out.decode()


def test_container_settings_are_the_walls(docker, sandbox, tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "network:\n  egress:\n    - action: deny\nresources:\n  cpu: 0.5\n  memory: 256Mi\n"
        "  pids: 64\n  disk: 32Mi\n"
    )
    name = sandbox(policy=policy.read_text())
    record = json.loads((paths.state_dir() / "sandboxes" / name / "sandbox.json").read_text())
    attrs = docker.containers.get(record["container"]).attrs
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
    assert "no-new-privileges" in host["SecurityOpt"]
    seccomp = next(o for o in host["SecurityOpt"] if o.startswith("seccomp="))
    assert json.loads(seccomp.split("=", 1)[1]) == _profile.profile()
    assert host["ReadonlyRootfs"] is True and host["Privileged"] is False
    assert (host["NanoCpus"], host["Memory"], host["MemorySwap"], host["PidsLimit"]) == (
        5 * 10**8,
        256 << 20,
        256 << 20,
        64,
    )
    assert f"size={32 << 20}" in host["Tmpfs"]["/tmp"]
    assert host["ShmSize"] == 32 << 20
    assert attrs["Config"]["User"] not in ("", "0", "root", "0:0")
    # host paths inside: the workspace (the one writable bind besides the agent's socket directory), the
    # channel and the CA bundle; never the engine's socket
    binds = {m["Destination"]: (m["Source"], m["RW"]) for m in attrs["Mounts"] if m["Type"] == "bind"}
    assert set(binds) == {
        "/workspace",
        "/run/openshell",
        "/run/openshell-agent",
        "/etc/openshell/ca-bundle.pem",
    }
    assert sorted(d for d, (_s, rw) in binds.items() if rw) == ["/run/openshell-agent", "/workspace"]
    assert not any("docker.sock" in s for s, _ in binds.values())
    _code, out = _sh(
        name,
        "touch /usr/x /etc/x /x 2>&1; echo w > /workspace/w && echo ws-ok; "
        "ls /run/openshell-agent >/dev/null && echo agent-dir",
    )
    assert out.count("Read-only file system") == 3 and "ws-ok" in out, out


def test_exec_refuses_a_socket_that_is_not_the_agents(sandbox):
    """Code inside may not stand in for the agent: the host checks who owns the control socket, and the
    agent answers host processes only."""
    name = sandbox()
    record = json.loads((paths.state_dir() / "sandboxes" / name / "sandbox.json").read_text())
    # the agent refuses a connection from inside its own sandbox
    probe = (
        "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('/run/openshell-agent/control.sock')\n"
        "try:\n    s.sendall(b'x' * 8); print('closed' if s.recv(10) == b'' else 'answered')\n"
        "except (ConnectionResetError, BrokenPipeError):  # (closed before or after the bytes arrived)\n"
        "    print('closed')\n"
    )
    proc = get_backend("docker").exec(name, ["python3", "-c", probe], stdout=subprocess.PIPE)
    out = proc.communicate(timeout=60)[0].decode()
    assert out.strip() == "closed", out
    assert "refused an exec connection from inside the sandbox" in get_backend("docker").logs(name)
    # a socket of someone else at the agent's path gets nothing
    import socket

    impostor = socket.socket(socket.AF_UNIX)
    ctl = record["control"]
    os.rename(ctl, ctl + ".real")
    try:
        impostor.bind(ctl)
        impostor.listen(1)
        with pytest.raises(SandboxError, match="not its agent"):
            get_backend("docker").exec(name, ["true"])
    finally:
        impostor.close()
        os.unlink(ctl)
        os.rename(ctl + ".real", ctl)
    assert get_backend("docker").exec(name, ["true"]).wait(30) == 0  # control: the agent's own


def test_root_user_refused(sandbox, tmp_path):
    policy = tmp_path / "root.yaml"
    policy.write_text("network:\n  egress:\n    - action: deny\nprocess:\n  user: root\n")
    with pytest.raises(SandboxError, match="never runs as root"):
        sandbox(policy=policy.read_text())


def test_gpu_on_a_host_without_one_is_a_clear_error(sandbox):
    if os.path.exists("/dev/nvidiactl"):
        pytest.skip("this host has an NVIDIA GPU")
    with pytest.raises(SandboxError, match="no NVIDIA device"):
        sandbox(gpu=True)


def _image_from(docker, files: dict[str, tuple[bytes, int]], tag: str) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, (data, mode) in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    docker.api.import_image_from_data(buf.getvalue(), repository=tag.split(":")[0], tag=tag.split(":")[1])
    return tag


def _libs(binary: str) -> dict[str, tuple[bytes, int]]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    files = {binary.lstrip("/"): (Path(binary).read_bytes(), 0o755)}
    for line in out.splitlines():
        path = line.split("=>")[-1].split("(")[0].strip()
        if path.startswith("/"):
            real = os.path.realpath(path)
            files[path.lstrip("/")] = (Path(real).read_bytes(), 0o755)
    return files


def test_image_without_python_refused_with_what_to_add(docker, sandbox):
    tag = _image_from(docker, {**_libs("/bin/sh")}, "openshell-test/no-python:1")
    with pytest.raises(SandboxError, match=r"python3 >= 3\.10.*apt-get install -y python3"):
        sandbox(image=tag)
    assert not [c for c in docker.containers.list(all=True, filters={"ancestor": tag})]


def test_image_without_ipykernel_runs_sandboxes_but_refuses_kernels(docker, docker_ready, workspace):
    from jupyter_openshell.kernel.session import KernelConfig, KernelSandbox, KernelStartError

    tag = "openshell-test/no-ipykernel:1"
    strip = docker.containers.run(
        docker_ready,
        ["sh", "-c", "rm -rf /usr/local/lib/python3*/dist-packages/ipykernel*"],
        user="0:0",
        network_mode="none",
        detach=True,
    )
    try:
        assert strip.wait(timeout=60)["StatusCode"] == 0
        strip.commit(repository=tag.split(":")[0], tag=tag.split(":")[1])
    finally:
        strip.remove(force=True)
    with pytest.raises(KernelStartError, match=r"no ipykernel.*pip install ipykernel"):
        KernelSandbox.start(KernelConfig(backend="docker", image=tag, workspace=str(workspace)))
    # control: a plain sandbox of that image runs; the default image runs the kernel (conformance suite)
    backend = get_backend("docker")
    name = f"dk-{uuid.uuid4().hex[:6]}"
    backend.create(SandboxSpec(name=name, image=tag))
    try:
        assert backend.exec(name, ["python3", "-c", "print(1)"], stdout=subprocess.DEVNULL).wait(30) == 0
    finally:
        backend.destroy(name)


def test_local_backend_refuses_an_image():
    with pytest.raises(SandboxError, match="--backend docker"):
        get_backend("local").create(SandboxSpec(image="python:3.11"))


def test_cli_create_image_ls_and_gc_of_a_lost_record(docker, docker_ready, conformance_state):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "jupyter_openshell", "sandbox", *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",
        )

    name = f"dk-cli-{uuid.uuid4().hex[:6]}"
    made = cli("create", "--backend", "docker", "--image", docker_ready, "--name", name)
    assert made.returncode == 0, made.stderr
    listing = cli("ls").stdout
    row = next(line for line in listing.splitlines() if line.startswith(name))
    assert " docker " in row and docker_ready in row
    layers = next(i for i in json.loads(cli("ls", "--json").stdout) if i["name"] == name)["enforcement"]
    assert "network_mode none" in layers["network"]
    label = {"label": f"org.jupyter-openshell.sandbox={name}"}
    # a crashed CLI lost the record: the container is still there (control) until gc finds it by label
    import shutil

    shutil.rmtree(paths.state_dir() / "sandboxes" / name)
    assert len(docker.containers.list(all=True, filters=label)) == 1
    gc = cli("gc")
    assert gc.returncode == 0 and "removed container " in gc.stdout, gc.stderr
    assert docker.containers.list(all=True, filters=label) == []
