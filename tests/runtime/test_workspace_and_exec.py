"""A workspace the user gives keeps its owner (root: a POSIX ACL, undone on destroy; system directories
refused), the state directory stays hidden through a workspace that holds it, `stderr=STDOUT`, binds under
/run, and shims reaped whichever backend instance removes (or lists) their sandbox."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from jupyter_openshell.runtime import (
    Bind,
    SandboxError,
    SandboxSpec,
    _bwrap,
    _local,
    _resources,
    _shims,
    get_backend,
)

ACL = "system.posix_acl_access"


def _acl(path: Path) -> bytes | None:
    try:
        return os.getxattr(path, ACL)
    except OSError as exc:
        assert exc.errno == errno.ENODATA
        return None


def _facts(path: Path) -> tuple[int, int, int, bytes | None]:
    st = os.stat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), _acl(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="the root path needs root")
def test_root_owned_workspace_is_never_chowned(backend):
    workspace = Path(tempfile.mkdtemp(prefix="openshell-rootws-", dir="/tmp"))  # root, 0700
    (workspace / "host.txt").write_text("host")
    before = _facts(workspace)
    assert before[:2] == (0, 0) and before[3] is None
    name = f"rws-{uuid.uuid4().hex[:6]}"
    try:
        info = backend.create(SandboxSpec(name=name, workspace=workspace))
        assert info.details["uid"] not in (0, None)
        during = os.stat(workspace)
        assert (during.st_uid, during.st_gid) == (0, 0)  # the owner is never changed
        proc = backend.exec(name, ["sh", "-c", "cat host.txt; echo made > new.txt"], stdout=subprocess.PIPE)
        assert proc.communicate(timeout=30)[0] == b"host" and proc.returncode == 0
        assert (workspace / "new.txt").read_text() == "made\n"
    finally:
        backend.destroy(name)
    assert _facts(workspace) == before  # owner, mode and (absent) ACL as they were
    shutil.rmtree(workspace)


@pytest.mark.skipif(os.geteuid() != 0, reason="the root path needs root")
def test_existing_acl_of_a_workspace_is_restored(backend):
    workspace = Path(tempfile.mkdtemp(prefix="openshell-aclws-", dir="/tmp"))
    subprocess.run(["setfacl", "-m", "u:4242:rx", str(workspace)], check=True)
    before = _facts(workspace)
    name = f"acl-{uuid.uuid4().hex[:6]}"
    try:
        backend.create(SandboxSpec(name=name, workspace=workspace))
        assert backend.exec(name, ["touch", "w"]).wait(30) == 0
    finally:
        backend.destroy(name)
    assert _facts(workspace) == before
    shutil.rmtree(workspace)


@pytest.mark.skipif(os.geteuid() != 0, reason="the root path needs root")
def test_two_sandboxes_sharing_a_root_owned_workspace(backend):
    workspace = Path(tempfile.mkdtemp(prefix="openshell-sharedws-", dir="/tmp"))
    before = _facts(workspace)
    first, second = f"sh1-{uuid.uuid4().hex[:6]}", f"sh2-{uuid.uuid4().hex[:6]}"
    try:
        backend.create(SandboxSpec(name=first, workspace=workspace))
        backend.create(SandboxSpec(name=second, workspace=workspace))
        backend.destroy(first)  # must take only its own ACL entry away
        assert backend.exec(second, ["touch", "still-writable"]).wait(30) == 0
    finally:
        for name in (first, second):
            if name in {i.name for i in backend.list()}:
                backend.destroy(name)
    assert (workspace / "still-writable").exists()
    assert _facts(workspace) == before
    shutil.rmtree(workspace)


@pytest.mark.parametrize("directory", ["/etc", "/", "/usr/local", "/root", "/var"])
def test_system_directories_are_refused_as_workspace(backend, directory):
    before = _facts(Path(directory))
    name = f"sys-{uuid.uuid4().hex[:6]}"
    with pytest.raises(SandboxError, match="system directory"):
        backend.create(SandboxSpec(name=name, workspace=directory))
    assert _facts(Path(directory)) == before
    assert name not in [i.name for i in backend.list()]


def test_a_workspace_we_create_is_created_and_kept(backend):
    parent = Path(tempfile.mkdtemp(prefix="openshell-newws-", dir="/tmp"))
    parent.chmod(0o755)
    workspace = parent / "new" / "ws"
    name = f"new-{uuid.uuid4().hex[:6]}"
    backend.create(SandboxSpec(name=name, workspace=workspace))
    try:
        assert backend.exec(name, ["sh", "-c", "echo x > f"]).wait(30) == 0
    finally:
        backend.destroy(name)
    assert (workspace / "f").read_text() == "x\n"
    shutil.rmtree(parent)


def test_state_dir_inside_a_workspace_or_bind_is_masked(tmp_path):
    (tmp_path / "home" / ".local" / "openshell").mkdir(parents=True)
    cmd = _bwrap.Command()
    try:
        _bwrap.build(
            cmd,
            name="m",
            user="sandbox",
            uid=1000,
            workspace=str(tmp_path / "home"),
            chan=str(tmp_path),
            ca_pem=b"",
            tmp_size=1 << 20,
            read_only=[],
            read_write=[],
            hidden=[],
            runtime_paths=[],
            state_dir=str(tmp_path / "home" / ".local" / "openshell"),
            gpu=None,
            binds=[(str(tmp_path), "/data", False)],
        )
    finally:
        cmd.close()
    args = cmd.args
    for masked in ("/workspace/.local/openshell", "/data/home/.local/openshell"):
        at = args.index(masked)
        assert args[at - 1] == "--tmpfs"


def test_stderr_to_stdout(backend):
    name = f"out-{uuid.uuid4().hex[:6]}"
    backend.create(SandboxSpec(name=name))
    try:
        proc = backend.exec(
            name,
            ["sh", "-c", "echo out; echo err >&2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        out, err = proc.communicate(timeout=30)
        assert (out, err, proc.returncode) == (b"out\nerr\n", None, 0)
        with tempfile.TemporaryFile() as fh:
            assert (
                backend.exec(
                    name, ["sh", "-c", "echo a; echo b >&2"], stdout=fh, stderr=subprocess.STDOUT
                ).wait(30)
                == 0
            )
            fh.seek(0)
            assert fh.read() == b"a\nb\n"
    finally:
        backend.destroy(name)


def test_binds_under_run_and_root_stays_read_only(backend):
    data = Path(tempfile.mkdtemp(prefix="openshell-run-", dir="/tmp"))
    out = Path(tempfile.mkdtemp(prefix="openshell-runw-", dir="/tmp"))
    (data / "in.txt").write_text("in")
    data.chmod(0o755)
    (data / "in.txt").chmod(0o644)
    out.chmod(0o777)
    name = f"run-{uuid.uuid4().hex[:6]}"
    backend.create(
        SandboxSpec(name=name, binds=[Bind(str(data), "/run/data"), Bind(str(out), "/run/deep/out", True)])
    )
    try:
        proc = backend.exec(
            name,
            ["sh", "-c", "cat /run/data/in.txt > /run/deep/out/copy; touch /newfile /run/x /run/data/y"],
            stderr=subprocess.PIPE,
        )
        _, err = proc.communicate(timeout=30)
        assert proc.returncode != 0
        assert err.count(b"Read-only file system") == 3  # /, /run and the read-only bind
    finally:
        backend.destroy(name)
    assert (out / "copy").read_text() == "in"
    shutil.rmtree(data)
    shutil.rmtree(out)


def _gone(pid: int) -> bool:
    """True once `pid` is neither running nor a zombie waiting for us."""
    return not os.path.exists(f"/proc/{pid}")


def test_any_backend_instance_reaps_shims(backend, policy_file):
    first, second = get_backend(), get_backend()
    name = f"reap-{uuid.uuid4().hex[:6]}"
    info = first.create(SandboxSpec(name=name))
    second.destroy(name)  # another instance: must still wait for the shim the first started
    assert _gone(info.details["pid"])
    short = f"short-{uuid.uuid4().hex[:6]}"
    info = first.create(SandboxSpec.from_policy_file(policy_file("resources:\n  timeout: 1\n"), name=short))
    deadline = time.monotonic() + 10
    while get_backend().status(short).state != "exited" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert get_backend().status(short).state == "exited"
    assert _gone(info.details["pid"])  # the shim that ended by itself was reaped by a later call
    assert info.details["pid"] not in _shims._SHIMS
    get_backend().destroy(short)


def test_every_process_of_the_sandbox_is_in_its_cgroups(backend):
    # the shim is moved while bwrap starts; what it forked before that must be moved too
    name = f"cg-{uuid.uuid4().hex[:6]}"
    info = backend.create(SandboxSpec(name=name))
    try:
        paths = _local._state.read(name)["enforcement"]["paths"]
        if not paths:
            pytest.skip(f"no cgroups here ({info.enforcement['resources']})")
        tree = _resources._descendants(info.details["pid"])
        assert len(tree) >= 4  # timeout, bwrap, the namespace's init, the agent
        for path in paths:
            assert set(tree) <= _resources._procs(path), path
        proc = backend.exec(
            name, ["sh", "-c", "sleep 0.1 & cat /proc/self/cgroup; wait"], stdout=subprocess.PIPE
        )
        assert proc.communicate(timeout=30)[0]
        assert set(_resources._descendants(info.details["pid"])) <= _resources._procs(paths[0])
    finally:
        backend.destroy(name)


def test_a_command_that_stops_its_agent_cannot_hold_the_caller(backend):
    """Code inside can SIGSTOP its own agent (same uid); the host caller's kill then gets no answer.
    It gives up after KILL_GRACE_S (`abandon`) instead of hanging, and the sandbox can still be removed."""
    from jupyter_openshell.runtime import KILL_GRACE_S

    name = f"stop-{uuid.uuid4().hex[:8]}"
    backend.create(SandboxSpec(name=name))
    try:
        proc = backend.exec(
            name, ["sh", "-c", "kill -STOP $PPID; sleep 300"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        with pytest.raises(subprocess.TimeoutExpired):
            proc.communicate(timeout=1)
        started = time.monotonic()
        proc.kill()
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(KILL_GRACE_S)  # the stopped agent never confirms
        proc.abandon()
        assert proc.returncode is not None and proc.poll() == proc.returncode
        assert time.monotonic() - started < KILL_GRACE_S + 2
    finally:
        backend.destroy(name)
    assert name not in [i.name for i in backend.list()]


def test_cli_exec_gives_up_on_a_stopped_agent_instead_of_hanging(backend):
    """`openshell sandbox exec` asked to end (SIGTERM, as `timeout` sends) by a command that stopped its
    agent: SIGKILL after the grace, then it gives up with a message instead of hanging forever."""
    import signal
    import sys

    from jupyter_openshell.runtime import KILL_GRACE_S

    name = f"stopcli-{uuid.uuid4().hex[:8]}"
    backend.create(SandboxSpec(name=name))
    try:
        # (a file, not a pipe: the command, never killed by its stopped agent, keeps a pipe open)
        with tempfile.TemporaryFile() as err:
            cli = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "jupyter_openshell",
                    "sandbox",
                    "exec",
                    name,
                    "--",
                    "sh",
                    "-c",
                    "kill -STOP $PPID; sleep 300",
                ],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
            until = time.monotonic() + 30  # the CLI forwards signals, and the agent is stopped
            shim = backend.status(name).details["pid"]
            while (
                not (_catches(cli.pid, signal.SIGTERM) and _stopped_agent(shim)) and time.monotonic() < until
            ):
                time.sleep(0.1)
            assert cli.poll() is None and _stopped_agent(shim)
            cli.send_signal(signal.SIGTERM)
            assert cli.wait(timeout=2 * KILL_GRACE_S + 5) == 137
            err.seek(0)
            assert b"does not end the command" in err.read()
    finally:
        backend.destroy(name)


def _catches(pid: int, sig: int) -> bool:
    """Has process `pid` installed a handler for `sig`?"""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (sig - 1)))
    return False


def _stopped_agent(shim: int) -> bool:
    """Is the agent of the sandbox whose shim is `shim` in the stopped state (T)? (Only that sandbox's
    tree: other sandboxes on the machine may have stopped agents of their own.)"""
    for pid in _resources._descendants(shim):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat[stat.rindex(")") + 2] == "T" and b"_agent" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except (OSError, ValueError):
            continue
    return False
