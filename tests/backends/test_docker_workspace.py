"""The docker backend's workspace: what the engine binds is what was planned, and a tmpfs workspace.

The engine binds protected workspace entries by path (the local backend binds the O_PATH fds it
planned), so something that replaces an entry on the host between the plan and the container's start
would have the engine bind whatever is there then (it follows a link): `_mounts.verify` compares each
mount, seen from inside the container, with the inode the plan holds open, and the create fails before
anything runs in the container. The control: without that check the same swap does show the host's
secret inside. Where no loop device can be had, a private workspace is a tmpfs the engine mounts with
the disk limit and its inode count (what an unprivileged docker user gets too).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from jupyter_openshell import paths
from jupyter_openshell.runtime import SandboxError, SandboxSpec, _disk, get_backend
from jupyter_openshell.runtime.docker import _mounts

SECRET = "host-secret-4d1f"


@pytest.fixture
def docker(docker_ready, conformance_state):
    import docker as sdk

    return sdk.from_env()


def _sh(name: str, script: str) -> str:
    proc = get_backend("docker").exec(
        name, ["sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    return proc.communicate(timeout=60)[0].decode()


def _swap_after_the_plan(monkeypatch, workspace: Path, entry: str, secret: Path) -> None:
    """Once the plan holds its fds and the mounts name their paths, `entry` becomes a link to `secret`."""
    planned = _mounts.workspace_mounts

    def swapped(*args):
        out = planned(*args)
        (workspace / entry).rename(workspace / f"{entry}.moved")
        (workspace / entry).symlink_to(secret)
        return out

    monkeypatch.setattr(_mounts, "workspace_mounts", swapped)


def _secret(tmp: Path, entry: str) -> Path:
    """A host directory (for .git) or file (Makefile) no sandbox may see."""
    if entry == ".git":
        (tmp / "secret-dir").mkdir()
        (tmp / "secret-dir" / "secret").write_text(SECRET)
        return tmp / "secret-dir"
    (tmp / "secret").write_text(SECRET)
    return tmp / "secret"


def _read_inside(entry: str) -> str:
    return f"cat /workspace/{entry}/secret /workspace/{entry} 2>/dev/null"


@pytest.mark.parametrize("entry", [".git", "Makefile"])  # an existing entry; a placeholder
def test_an_entry_swapped_while_the_container_starts_is_refused(
    docker, workspace, tmp_path, monkeypatch, entry
):
    subprocess.run(["git", "init", "-q", str(workspace)], check=True)
    _swap_after_the_plan(monkeypatch, workspace, entry, _secret(tmp_path, entry))
    name = f"dk-{uuid.uuid4().hex[:6]}"
    with pytest.raises(SandboxError, match=f"/workspace/{entry} in its container is not the host entry"):
        get_backend("docker").create(SandboxSpec(name=name, workspace=str(workspace)))
    # nothing of it is left: no container, no record
    assert docker.containers.list(all=True, filters={"label": f"org.jupyter-openshell.sandbox={name}"}) == []
    assert not (paths.state_dir() / "sandboxes" / name).exists()


@pytest.mark.parametrize("entry", [".git", "Makefile"])
def test_control_without_the_check_the_swap_shows_the_host_secret(workspace, tmp_path, monkeypatch, entry):
    subprocess.run(["git", "init", "-q", str(workspace)], check=True)
    _swap_after_the_plan(monkeypatch, workspace, entry, _secret(tmp_path, entry))
    monkeypatch.setattr(_mounts, "verify", lambda *args: None)
    name = f"dk-{uuid.uuid4().hex[:6]}"
    backend = get_backend("docker")
    backend.create(SandboxSpec(name=name, workspace=str(workspace)))
    try:
        assert SECRET in _sh(name, _read_inside(entry))  # the engine followed the link
    finally:
        backend.destroy(name)


def test_without_loop_devices_a_private_workspace_is_an_engine_tmpfs(
    docker_ready, conformance_state, tmp_path, monkeypatch
):
    def no_loop(*_args):
        raise OSError(6, "no free loop device")

    monkeypatch.setattr(_disk, "_attach_loop", no_loop)
    policy = tmp_path / "p.yaml"
    policy.write_text("network:\n  egress:\n    - action: deny\nresources:\n  disk: 16Mi\n")
    name = f"dk-{uuid.uuid4().hex[:6]}"
    backend = get_backend("docker")
    info = backend.create(SandboxSpec.from_policy_file(policy, name=name))
    try:
        assert info.details["resources"]["disk"]["workspace"]["by"] == "tmpfs"
        mounted = _sh(name, "grep ' /workspace ' /proc/self/mountinfo; touch /workspace/x && echo wrote")
        assert " - tmpfs " in mounted and "size=16384k,nr_inodes=1024" in mounted and "wrote" in mounted
        # its inodes run out at 1024 (the control: the same loop in /tmp, a 16 MiB tmpfs sized by bytes)
        count = "i=0; while [ $i -lt 3000 ] && {{ true >{d}/f$i; }} 2>/dev/null; do i=$((i+1)); done; echo $i"
        assert int(_sh(name, count.format(d="/workspace")).split()[-1]) < 1100
        assert int(_sh(name, count.format(d="/tmp")).split()[-1]) == 3000
        record = json.loads((paths.state_dir() / "sandboxes" / name / "sandbox.json").read_text())
        assert record["disk"]["mechanism"] == "tmpfs"
        assert not Path(record["exposed"], "workspace.img").exists()
    finally:
        backend.destroy(name)


def _placeholders(name: str) -> set[tuple]:
    record = json.loads((paths.state_dir() / "sandboxes" / name / "sandbox.json").read_text())
    return {tuple(p[:4]) for p in record["protect"]["placeholders"]}


@pytest.mark.parametrize("first_out", ["docker", "local"])
def test_placeholders_are_shared_with_a_local_sandbox_on_the_same_workspace(
    docker_ready, conformance_state, workspace, first_out
):
    """One record format and one lock for both backends: the second sandbox adopts the first one's
    placeholders, whichever leaves first leaves them to the other, the last one out removes them."""
    names = {kind: f"{kind[:2]}-{uuid.uuid4().hex[:6]}" for kind in ("local", "docker")}
    for kind, name in names.items():
        get_backend(kind).create(SandboxSpec(name=name, workspace=str(workspace)))
    try:
        assert _placeholders(names["local"]) == _placeholders(names["docker"]) != set()
        assert "refused" in _sh(names["docker"], "echo x >/workspace/conftest.py || echo refused")
        assert (workspace / "conftest.py").read_text() == ""
        second = "local" if first_out == "docker" else "docker"
        get_backend(first_out).destroy(names.pop(first_out))
        assert (workspace / "conftest.py").is_file() and (workspace / ".git").is_dir()  # (still in use)
        get_backend(second).destroy(names.pop(second))
        assert not (workspace / "conftest.py").exists() and not (workspace / ".git").exists()
    finally:
        for kind, name in names.items():
            get_backend(kind).destroy(name)
