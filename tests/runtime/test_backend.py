"""The Backend API of the local runtime: exec semantics (streams, exit codes, signals, env, cwd),
lifecycle (status, stop, destroy, orphans left by a crashed CLI), and clear errors for bad input."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from jupyter_openshell.proxy import ProxyClient
from jupyter_openshell.runtime import Bind, SandboxError, SandboxSpec, _host, _local, get_backend


@pytest.fixture
def box(backend):
    name = f"api-{uuid.uuid4().hex[:6]}"
    backend.create(SandboxSpec(name=name, env={"FROM_SPEC": "spec-value"}))
    yield name
    if name in {i.name for i in backend.list()}:
        backend.destroy(name)


def test_exec_streams_exit_code_env_cwd_stdin(backend, box):
    proc = backend.exec(
        box,
        ["sh", "-c", "read line; echo got:$line; echo $FROM_SPEC $EXTRA; pwd; echo oops >&2; exit 7"],
        env={"EXTRA": "x"},
        cwd="/tmp",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(b"hello\n", timeout=30)
    assert proc.returncode == 7
    assert out.decode().split("\n")[:3] == ["got:hello", "spec-value x", "/tmp"]
    assert err == b"oops\n"


def test_commands_inherit_only_their_stdio(backend, box):
    # the agent's control listener must never reach a command (it could take exec requests and the
    # caller's fds meant for the agent); the agent's log must not either
    proc = backend.exec(
        box,
        ["python3", "-c", "import os; print(sorted(int(f) for f in os.listdir('/proc/self/fd')))"],
        stdout=subprocess.PIPE,
    )
    out, _ = proc.communicate(timeout=30)
    assert out.decode().strip() == "[0, 1, 2, 3]"  # 3: the listing's own directory fd


def test_exec_output_goes_straight_to_the_callers_fd(backend, box, tmp_path):
    target = tmp_path / "out.txt"
    with open(target, "wb") as fh:
        assert backend.exec(box, ["echo", "direct"], stdout=fh).wait(30) == 0
    assert target.read_bytes() == b"direct\n"


def test_signals_reach_the_command_and_wait_times_out(backend, box):
    proc = backend.exec(box, ["sleep", "30"], stdout=subprocess.DEVNULL)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(0.2)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == -signal.SIGTERM


def test_relative_command_runs_from_the_given_cwd(backend, box):
    assert (
        backend.exec(
            box,
            [
                "sh",
                "-c",
                "mkdir -p /tmp/bin && printf '#!/bin/sh\\necho rel' > /tmp/bin/t.sh "
                "&& chmod +x /tmp/bin/t.sh",
            ],
        ).wait(30)
        == 0
    )
    proc = backend.exec(box, ["./t.sh"], cwd="/tmp/bin", stdout=subprocess.PIPE)
    assert proc.communicate(timeout=30)[0] == b"rel\n"


def test_missing_command_is_127_with_a_message(backend, box):
    proc = backend.exec(box, ["no-such-command-xyz"], stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 127
    assert b"no-such-command-xyz" in err


def test_workspace_persists_between_execs_and_is_the_default_cwd(backend, box):
    assert backend.exec(box, ["sh", "-c", "echo kept > note.txt"]).wait(30) == 0
    proc = backend.exec(box, ["cat", "/workspace/note.txt"], stdout=subprocess.PIPE)
    assert proc.communicate(timeout=30)[0] == b"kept\n"


def test_given_workspace_and_binds_are_used_and_kept(backend, tmp_path):
    workspace = Path(tempfile.mkdtemp(prefix="openshell-ws-", dir="/tmp"))
    data = Path(tempfile.mkdtemp(prefix="openshell-data-", dir="/tmp"))
    (data / "input.txt").write_text("from host")
    for path in (data, data / "input.txt"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    name = f"ws-{uuid.uuid4().hex[:6]}"
    backend.create(SandboxSpec(name=name, workspace=workspace, binds=[Bind(str(data), "/data")]))
    proc = backend.exec(
        name, ["sh", "-c", "cat /data/input.txt > result.txt; touch /data/x"], stderr=subprocess.PIPE
    )
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and b"Read-only file system" in err
    backend.destroy(name)
    assert (workspace / "result.txt").read_text() == "from host"  # the given workspace outlives the sandbox
    shutil.rmtree(workspace)
    shutil.rmtree(data)


def test_status_list_stop_destroy(backend, box):
    info = backend.status(box)
    assert info.state == "running"
    assert info.address.startswith("127.77.")
    assert info.enforcement["resources"] in ("cgroup v1", "cgroup v2", "rlimits")
    assert box in [i.name for i in backend.list()]
    stopped = backend.stop(box)
    assert stopped.state == "stopped"
    with pytest.raises(SandboxError, match="not running"):
        backend.exec(box, ["true"])
    backend.destroy(box)
    with pytest.raises(SandboxError, match="no sandbox named"):
        backend.status(box)


def test_restarted_cli_finds_and_cleans_orphans(backend):
    crashed, dead = f"orph-{uuid.uuid4().hex[:6]}", f"dead-{uuid.uuid4().hex[:6]}"
    backend.create(SandboxSpec(name=crashed))
    backend.create(SandboxSpec(name=dead))
    state = Path(os.environ["OPENSHELL_STATE_DIR"])
    shim, shim_start = _local._state.read(crashed)["pid"], _local._state.read(crashed)["pid_start"]
    (state / "sandboxes" / crashed / "sandbox.json").unlink()  # a CLI died before recording it
    os.killpg(_local._state.read(dead)["pid"], signal.SIGKILL)  # its processes died under it
    time.sleep(0.2)
    fresh = get_backend()  # a new process's view
    assert fresh.status(dead).state == "exited"
    cleaned = fresh.cleanup()
    assert dead in cleaned and f"pid {shim}" in cleaned
    assert dead not in [i.name for i in fresh.list()]
    assert not (state / "sandboxes" / crashed).exists()
    assert crashed not in ProxyClient().status().get("sandboxes", crashed)  # its identity is released
    deadline = time.monotonic() + 5
    while _local._state.alive(shim, shim_start) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _local._state.alive(shim, shim_start)


def test_bad_input_is_reported_with_what_to_do(backend, policy_file):
    with pytest.raises(SandboxError, match="invalid sandbox name"):
        backend.create(SandboxSpec(name="../etc"))
    bad = policy_file("network:\n  egres:\n    - action: deny\n")
    with pytest.raises(SandboxError) as exc:
        backend.create(SandboxSpec.from_policy_file(bad, name="badpolicy"))
    assert str(bad) in str(exc.value) and "egress" in str(exc.value)
    with pytest.raises(SandboxError, match="never runs as root"):
        backend.create(SandboxSpec.from_policy_file(policy_file("process:\n  user: root\n"), name="rootuser"))
    assert "badpolicy" not in [i.name for i in backend.list()]
    with pytest.raises(SandboxError, match=r"filesystem.read_write\[0\] '/proc'"):
        backend.create(
            SandboxSpec.from_policy_file(policy_file("filesystem:\n  read_write: [/proc]\n"), name="procbind")
        )
    with pytest.raises(SandboxError, match="does not exist on this host"):
        backend.create(
            SandboxSpec.from_policy_file(policy_file("filesystem:\n  read_only: [/nope/x]\n"), name="nopath")
        )
    with pytest.raises(SandboxError, match="unknown sandbox backend"):
        get_backend("no-such-backend")


def test_unreadable_python_is_a_clear_error(tmp_path):
    private = Path(tempfile.mkdtemp(prefix="openshell-private-"))
    private.chmod(0o700)
    (private / "python3").write_text("")
    with pytest.raises(SandboxError, match=r"not readable by the sandbox's uid .*0700 home"):
        _host.check_reachable([str(private / "python3")], 65534, python=True)
    (private / "python3").unlink()
    private.rmdir()


@pytest.mark.skipif(bool(glob.glob("/dev/nvidia*")), reason="this host has an NVIDIA GPU")
def test_gpu_requested_but_absent_is_a_clear_error(backend):
    with pytest.raises(SandboxError, match="no NVIDIA device"):
        backend.create(SandboxSpec(name="gpu-absent", gpu=True))
    assert "gpu-absent" not in [i.name for i in backend.list()]


@pytest.mark.gpu
@pytest.mark.skipif(not glob.glob("/dev/nvidiactl"), reason="needs an NVIDIA GPU and driver")
def test_gpu_present_nvidia_smi_works_inside(backend):
    backend.create(SandboxSpec(name="gpu-present", gpu=True))
    proc = backend.exec("gpu-present", ["nvidia-smi", "-L"], stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=60)
    backend.destroy("gpu-present")
    assert proc.returncode == 0 and b"GPU 0" in out
