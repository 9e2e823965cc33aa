"""Attacks on the host and on other sandboxes through shared state (root and unprivileged): another
sandbox's files and environment, and links planted in the workspace for the host to follow."""

from __future__ import annotations

import tempfile
from pathlib import Path


def test_other_sandbox_files_and_environment_invisible(mode):
    a = mode.create()
    b = mode.create()
    secret = "neighbour-secret-4242"
    mode.sh(a, f"echo {secret} > /workspace/secret.txt")
    running = mode.cli(
        "exec", "--env", f"TOKEN={secret}", a, "--", "sh", "-c", "nohup sleep 60 >/dev/null 2>&1 & echo ok"
    )
    assert running.stdout.strip() == "ok"
    a_record = mode.record(a)
    probe = mode.sh(
        b,
        f"cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c {secret}; "
        f"ls {a_record['workspace']} 2>&1; cat /workspace/secret.txt 2>&1",
    )
    assert probe.stdout.splitlines()[0] == "0"
    assert "No such file or directory" in probe.stdout
    assert secret not in probe.stdout
    mode.rm(a)
    mode.rm(b)


def test_destroy_does_not_follow_links_planted_in_the_workspace(mode):
    victim = Path(tempfile.mkdtemp(prefix="openshell-victim-"))
    (victim / "keep.txt").write_text("host data")
    victim.chmod(0o755)
    name = mode.create()
    mode.sh(
        name,
        f"ln -s {victim} /workspace/dir-link; ln -s {victim}/keep.txt /workspace/file-link; "
        "ln -s /etc /workspace/etc-link; mkdir -p /workspace/deep/er && chmod 000 /workspace/deep",
    )
    mode.rm(name)
    assert (victim / "keep.txt").read_text() == "host data"
    assert Path("/etc/hostname").exists()
    (victim / "keep.txt").unlink()
    victim.rmdir()


OTHER_USER = 54321  # a local user who is neither the caller nor any sandbox's
CONNECT = """
import socket, sys
for path in sys.argv[1:]:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        print("connected")
    except OSError as exc:
        print(exc.errno)
"""


def _connect_as(uid: int, paths: list[str]) -> list[str]:
    import subprocess
    import sys

    argv = ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups", sys.executable, "-I",
            "-c", CONNECT, *paths]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd="/").stdout.split()


def test_another_user_cannot_reach_a_sandbox_channel(mode):
    """Attack: another local user connects to the sandbox's proxy channel (its path shows in `ps`, in
    bwrap's arguments), to be taken for the sandbox (its policy, its inference key). Every path of the
    channel on the host is out of that user's reach (EACCES). Control: with the directory above the
    channel opened as it used to be (0711), the same user connects."""
    import os

    name = mode.create()
    record = mode.record(name)
    candidates = [Path(record["exposed"]) / "chan" / "proxy.sock"] if record.get("exposed") else []
    candidates.append(mode.state / "sandboxes" / name / "chan" / "proxy.sock")
    paths = [str(p) for p in candidates if p.is_socket()]
    assert paths, candidates
    assert _connect_as(OTHER_USER, paths) == ["13"] * len(paths)
    exposed = Path(record.get("exposed") or "/nonexistent")
    shown = exposed / "chan" / "proxy.sock"  # root, local: the path bwrap's arguments show
    if exposed.parent == Path("/var/lib/openshell-sandboxes") and shown.is_socket():  # the control
        before = exposed.stat().st_mode & 0o777
        os.chmod(exposed, 0o711)
        try:
            assert _connect_as(OTHER_USER, [str(shown)]) == ["connected"]
        finally:
            os.chmod(exposed, before)
    assert mode.sh(name, "echo alive").stdout.strip() == "alive"
    mode.rm(name)
