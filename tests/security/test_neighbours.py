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
