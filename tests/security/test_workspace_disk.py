"""`resources.disk` limits the workspace, as root and as an unprivileged user: a private workspace is an
ext4 image (root) or a tmpfs (unprivileged) of that size with a proportional inode count, so neither big
files nor many small ones get past it; `sandbox ls` says which mechanism holds and what it covers. A
workspace the caller gave on a filesystem without project quotas is said to be NOT-ENFORCED (the
control: there the same writes do get through). Loop devices and images never outlive their sandbox:
not after rm, stop, a create that fails midway, or `gc` of a sandbox whose record was lost.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from jupyter_openshell.runtime._workspace import EXPOSED_ROOT

DISK = "network:\n  egress:\n    - action: deny\nresources:\n  disk: 16Mi\n"
# Four 12 MiB files (each under RLIMIT_FSIZE = 16 MiB) and 5000 empty ones, counted as they land.
FILL = """
import errno, os
written = files = 0
stop = ""
for i in range(4):
    try:
        with open(f"/workspace/big{i}", "wb") as fh:
            for _ in range(12):
                fh.write(b"x" * (1 << 20))
                fh.flush()
                written += 1 << 20
    except OSError as exc:
        stop = errno.errorcode[exc.errno]
        break
for i in range(4):
    try:
        os.unlink(f"/workspace/big{i}")
    except FileNotFoundError:
        pass
os.mkdir("/workspace/many")
for i in range(5000):
    try:
        open(f"/workspace/many/{i}", "wb").close()
        files += 1
    except OSError as exc:
        stop += " " + errno.errorcode[exc.errno]
        break
print(written >> 20, files, stop)
"""


def _fill(mode, name: str) -> tuple[int, int, str]:
    proc = mode.python(name, FILL, timeout=120)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    mib, files, *stop = proc.stdout.split()
    return int(mib), int(files), " ".join(stop)


def _row(mode, name: str) -> tuple[str, str]:
    listing = mode.cli("ls").stdout
    return next(line for line in listing.splitlines() if line.startswith(name)), listing


def _loops_backed_by(prefix: str) -> list[str]:
    """Loop devices whose backing file is below `prefix` (from sysfs: no losetup needed)."""
    found = []
    for dev in Path("/sys/block").glob("loop*"):
        try:
            backing = (dev / "loop" / "backing_file").read_text().strip()
        except OSError:
            continue
        if backing.startswith(prefix):
            found.append(f"{dev.name}: {backing}")
    return found


def _mounts_below(prefix: str) -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        return [line.split()[4] for line in fh if line.split()[4].startswith(prefix)]


def test_private_workspace_holds_disk_size_and_inodes(mode):
    name = mode.create(DISK)
    mib, files, stop = _fill(mode, name)
    assert mib <= 16 and "ENOSPC" in stop, (mib, files, stop)  # not 48 MiB: the workspace is 16 MiB
    assert files <= 1100 and "ENOSPC" in stop, (mib, files, stop)  # 1024 inodes, not 5000 files
    assert mode.sh(name, "echo alive").stdout.strip() == "alive"  # (the sandbox goes on)
    row, listing = _row(mode, name)
    if mode.name == "root":
        assert "16M ext4-image+RLIMIT_FSIZE" in row
        assert "loop-mounted ext4 image of 16Mi with 1024 inodes" in listing
    else:
        assert "16M tmpfs+RLIMIT_FSIZE" in row
        assert "tmpfs of 16Mi with 1024 inodes, LOST WHEN THE SANDBOX STOPS" in listing
    details = json.loads(mode.cli("ls", "--json").stdout)
    disk = next(d for d in details if d["name"] == name)["details"]["resources"]["disk"]
    assert disk["workspace"]["limit"] == 16 << 20 and disk["workspace"]["inodes"] == 1024
    mode.rm(name)


def test_given_workspace_without_project_quotas_says_not_enforced(mode):
    """The control: the same writes into a workspace the caller gave, on this machine's filesystem (no
    project quotas), get through, and `ls` says so instead of implying a limit."""
    workspace = mode.workspace()
    name = mode.create(DISK, workspace=workspace)
    mib, files, stop = _fill(mode, name)
    assert (mib, files, stop) == (48, 5000, "")
    row, listing = _row(mode, name)
    assert "16M NOT-ENFORCED+RLIMIT_FSIZE" in row
    assert f"the workspace ({workspace}) has no quota" in listing
    # each file is still capped: RLIMIT_FSIZE
    big = mode.python(name, "open('/workspace/big', 'wb').write(b'x' * (32 << 20))")
    assert big.returncode != 0 and "File too large" in big.stderr
    mode.rm(name)
    shutil.rmtree(workspace)


def _root_only(mode) -> None:
    if mode.name != "root":
        pytest.skip(
            "loop-mounted images are root's mechanism (unprivileged: a tmpfs in the sandbox's namespace)"
        )


def test_image_and_loop_device_go_with_stop_rm_and_a_failed_create(mode):
    _root_only(mode)
    name = mode.create(DISK)
    image = mode.record(name)["disk"]["image"]
    assert _loops_backed_by(image) and _mounts_below(str(Path(image).parent))
    mode.cli("stop", name)
    assert _loops_backed_by(image) == [] and _mounts_below(str(Path(image).parent)) == []
    assert Path(image).exists()  # (stop keeps the files)
    mode.rm(name)
    assert not Path(image).exists() and not Path(image).parent.exists()
    loops_before = _loops_backed_by(str(EXPOSED_ROOT))

    # the sandbox fails to start after the image is mounted: locally bwrap cannot bind a policy path
    # below a directory the sandbox's uid cannot enter; in a container (the engine binds as root) the
    # policy hides the agent's code from the container's init
    private = mode.root / f"private-{uuid.uuid4().hex[:6]}" / "inner"
    private.mkdir(parents=True)
    private.parent.chmod(0o700)
    broken = f"read_only: [{str(private)!r}]"
    if mode.backend == "docker":
        broken = 'hidden: ["/opt/openshell/agent"]'
    before = set(os.listdir(EXPOSED_ROOT))
    failed = mode.cli(
        "create",
        "--backend",
        mode.backend,
        "--policy",
        mode.policy(DISK + f"filesystem:\n  {broken}\n"),
        check=False,
    )
    assert failed.returncode != 0 and "did not start" in failed.stderr, failed.stderr
    # (other sandboxes on this machine come and go in EXPOSED_ROOT: an image marks one of this code's)
    leaked = [
        p for p in set(os.listdir(EXPOSED_ROOT)) - before if (EXPOSED_ROOT / p / "workspace.img").exists()
    ]
    assert leaked == [] and _loops_backed_by(str(EXPOSED_ROOT)) == loops_before, leaked


def test_gc_unmounts_the_image_of_a_sandbox_whose_record_was_lost(mode):
    _root_only(mode)
    name = mode.create(DISK)
    record = mode.record(name)
    (mode.state / "sandboxes" / name / "sandbox.json").unlink()  # (a crashed CLI)
    assert _loops_backed_by(record["disk"]["image"])
    mode.cli("gc")
    assert _loops_backed_by(record["disk"]["image"]) == []
    assert not Path(record["exposed"]).exists()


def _prjquota_mount(base: Path, enforce: bool) -> Path | None:
    """An ext4 image with the project quota feature, loop-mounted (with prjquota when `enforce`)."""
    image, target = base / "pq.img", base / "pq"
    target.mkdir()
    subprocess.run(["truncate", "-s", "64M", str(image)], check=True)
    made = subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "quota,project", str(image)], capture_output=True)
    options = "loop,prjquota" if enforce else "loop"
    mounted = subprocess.run(
        ["mount", "-o", options, str(image), str(target)], capture_output=True, text=True
    )
    if made.returncode or mounted.returncode:
        return None
    target.chmod(0o755)
    return target


def test_project_quota_limits_a_given_workspace(mode, tmp_path):
    _root_only(mode)
    base = tmp_path / "fs"
    base.mkdir()
    target = _prjquota_mount(base, enforce=True)
    if target is None:
        pytest.skip("this kernel cannot mount ext4 with project quotas (CONFIG_QUOTA/CONFIG_QFMT_V2 missing)")
    try:
        workspace = target / "ws"
        workspace.mkdir()
        name = mode.create(DISK, workspace=workspace)
        row, _listing = _row(mode, name)
        assert "prjquota" in row
        mib, files, stop = _fill(mode, name)
        assert mib <= 16 and files <= 1100 and "EDQUOT" in stop, (mib, files, stop)
        mode.rm(name)
    finally:
        subprocess.run(["umount", str(target)], check=False)


CRASH_MIDWAY = """
import os, sys
from jupyter_openshell.runtime import SandboxSpec, _bwrap, get_backend
from jupyter_openshell.runtime.docker._backend import DockerBackend
# the CLI dies after the image is mounted: locally before bwrap runs, in docker once the container runs
_bwrap.build = DockerBackend._wait_ready = lambda *a, **k: os._exit(9)
get_backend(sys.argv[3]).create(SandboxSpec.from_policy_file(sys.argv[2], name=sys.argv[1]))
"""


def test_gc_unmounts_the_image_of_a_create_that_died_midway(mode):
    _root_only(mode)
    name = f"crash-{uuid.uuid4().hex[:6]}"
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_MIDWAY, name, mode.policy(DISK), mode.backend],
        env=mode.env(),
        cwd="/",
        check=False,
    )
    assert crashed.returncode == 9
    record = mode.record(name)
    assert record["state"] == "creating" and _loops_backed_by(record["disk"]["image"])
    assert " exited " in _row(mode, name)[0]  # (its creator is gone)
    mode.cli("gc")
    assert _loops_backed_by(record["disk"]["image"]) == [] and not Path(record["exposed"]).exists()
    assert name not in mode.cli("ls").stdout
