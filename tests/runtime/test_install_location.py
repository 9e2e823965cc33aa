"""Any install location works: a venv under /tmp (a checkout cloned there) runs sandboxes, although
each sandbox has a private /tmp. The venv is bound read-only at its path after the private /tmp is
mounted; nothing else of the host's /tmp becomes visible (the control: a file beside the venv).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import jupyter_openshell

HOST_SIDE = """
import subprocess, sys
from jupyter_openshell.runtime import SandboxSpec, get_backend
backend = get_backend()
info = backend.create(SandboxSpec())
try:
    out = subprocess.PIPE
    proc = backend.exec(info.name, ["sh", "-c", sys.argv[1]], stdout=out, stderr=subprocess.STDOUT)
    print(proc.communicate(timeout=60)[0].decode(), end="")
finally:
    backend.destroy(info.name)
"""


def test_a_venv_under_tmp_runs_sandboxes(runtime_state, proxy):
    base = Path(tempfile.mkdtemp(prefix="openshell-venv-", dir="/tmp"))
    try:
        base.chmod(0o755)  # (as a clone under /tmp is: the sandbox's uid must reach it)
        venv = base / "venv"
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True)
        # this checkout's package and its dependencies, as an install into that venv would give
        site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
        package_root = Path(jupyter_openshell.__file__).resolve().parent.parent
        (site / "openshell.pth").write_text(f"{package_root}\n{sysconfig.get_paths()['purelib']}\n")
        (base / "beside-the-venv.txt").write_text("host /tmp must stay hidden\n")
        script = (
            "echo python=$(command -v python3); python3 -c 'import sys; print(\"prefix=\" + sys.prefix)'; "
            f"ls {base}; cat {base}/beside-the-venv.txt 2>&1 || true"
        )
        env = {"PATH": "/usr/bin:/bin", "OPENSHELL_STATE_DIR": os.environ["OPENSHELL_STATE_DIR"]}
        done = subprocess.run(
            [str(venv / "bin" / "python"), "-c", HOST_SIDE, script],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd="/",
        )
        assert done.returncode == 0, done.stderr
        assert f"python={venv}/bin/python3" in done.stdout and f"prefix={venv}" in done.stdout, done.stdout
        assert "venv" in done.stdout.split() and "beside-the-venv.txt" not in done.stdout.replace(
            f"{base}/beside-the-venv.txt", ""
        ), done.stdout
        assert "No such file or directory" in done.stdout  # (the cat of the file beside the venv)
    finally:
        shutil.rmtree(base, ignore_errors=True)
