"""`openshell sandbox ...` end to end, as root and as an unprivileged user (setpriv, own state dir):
create, ls (with the active resource enforcement), exec (streams, exit code), policy show/set, logs, rm."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from jupyter_openshell.proxy import ProxyClient

NOBODY = 65534


@pytest.fixture(params=["root", "user"])
def cli(request):
    if os.geteuid() != 0:
        pytest.skip("both paths are driven from root (setpriv for the unprivileged one)")
    base = Path(tempfile.mkdtemp(prefix=f"openshell-cli-{request.param}-"))
    base.chmod(0o755)
    state = base / "state"
    state.mkdir(mode=0o700)
    if request.param == "user":
        os.chown(base, NOBODY, NOBODY)
        os.chown(state, NOBODY, NOBODY)
    prefix = (
        ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups"]
        if request.param == "user"
        else []
    )
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(OPENSHELL_STATE_DIR=str(state), HOME=str(base))

    def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*prefix, sys.executable, "-m", "jupyter_openshell", "sandbox", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd="/",
        )

    run.mode = request.param
    run.base = base
    yield run
    run("rm", "--all")
    ProxyClient(state).stop()
    shutil.rmtree(base, ignore_errors=True)


def test_cli_lifecycle(cli):
    created = cli("create", "--name", "cli-box")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "cli-box"

    listing = cli("ls").stdout
    row = next(line for line in listing.splitlines() if line.startswith("cli-box"))
    assert "running" in row and "127.77." in row
    assert ("cgroup v1" in row or "cgroup v2" in row) if cli.mode == "root" else "rlimits" in row
    # each resource says what enforces it; what rlimits cannot do is said, not implied
    # the private workspace is limited by default (1 GiB) and says how: an ext4 image (root), else a tmpfs
    if cli.mode == "root":
        assert "1G ext4-image" in row and "loop-mounted ext4 image of 1Gi" in listing
    else:
        assert "1G tmpfs" in row and "LOST WHEN THE SANDBOX STOPS" in listing
    assert "/tmp and /dev/shm are tmpfs of 536870912 bytes each" in listing
    if cli.mode == "root":
        assert "1.0 cgroup" in row and "2G cgroup" in row and "256 cgroup" in row
        assert "NOT-ENFORCED" not in listing
    else:
        assert "1.0 NOT-ENFORCED" in row and "2G RLIMIT_AS" in row and "256 RLIMIT_NPROC" in row
        assert "RLIMIT_CPU caps CPU time, not the rate" in listing
    as_json = json.loads(cli("ls", "--json").stdout)[0]["details"]["resources"]
    expected = ("cgroup v1 (cpu.cfs_quota_us)", "cgroup v2 (cpu.max)") if cli.mode == "root" else ("none",)
    assert as_json["cpu"]["by"] in expected
    mechanism = "ext4-image" if cli.mode == "root" else "tmpfs"
    assert as_json["disk"]["by"] == mechanism and as_json["disk"]["limit"] == 1 << 30
    assert as_json["disk"]["workspace"]["by"] == mechanism and as_json["disk"]["workspace"]["inodes"] == 65536

    done = cli("exec", "cli-box", "--", "sh", "-c", "echo out; echo err >&2; exit 5")
    assert (done.returncode, done.stdout, done.stderr) == (5, "out\n", "err\n")
    assert cli("exec", "cli-box", "--", "cat", input="piped\n").stdout == "piped\n"

    assert "action: deny" in cli("policy", "cli-box").stdout
    new_policy = cli.base / "p.yaml"
    new_policy.write_text(
        "network:\n  egress:\n    - host: api.example.com\n      action: allow\n    - action: deny\n"
    )
    new_policy.chmod(0o644)
    applied = cli("policy", "cli-box", "--set", str(new_policy))
    assert applied.returncode == 0 and "applied" in applied.stdout, applied.stderr
    assert "api.example.com" in cli("policy", "cli-box").stdout
    bad = cli.base / "bad.yaml"
    bad.write_text("network:\n  egress: 3\n")
    bad.chmod(0o644)
    refused = cli("policy", "cli-box", "--set", str(bad))
    assert refused.returncode == 1 and "egress" in refused.stderr
    assert "api.example.com" in cli("policy", "cli-box").stdout  # the old policy stays in force

    history = cli("policy", "cli-box", "--history").stdout.splitlines()
    assert len(history) == 2 and history[-1].endswith("(current)"), history
    first = history[0].split()[2]
    assert "+    - host: api.example.com" in cli("policy", "cli-box", "--diff", first).stdout
    back = cli("policy", "cli-box", "--rollback", first)
    assert back.returncode == 0 and f"policy version {first} applied" in back.stdout, back.stderr
    assert "api.example.com" not in cli("policy", "cli-box").stdout
    unknown = cli("policy", "cli-box", "--rollback", "ffff")
    assert unknown.returncode == 1 and "--history` lists the versions" in unknown.stderr

    assert "ready" in cli("logs", "cli-box").stdout
    assert cli("rm", "cli-box").returncode == 0
    assert "cli-box" not in cli("ls").stdout
    missing = cli("exec", "cli-box", "--", "true")
    assert missing.returncode == 1 and "no sandbox named cli-box" in missing.stderr
