"""Attack-suite fixtures: the `openshell sandbox` CLI driven as root and as an unprivileged user.

`mode` is parametrized: "root" runs the CLI as root with its own state directory; "user" runs it
under `setpriv --reuid 65534 --regid 65534 --clear-groups` with a state directory owned by that uid;
"root-docker" is "root" with `--backend docker` (never unprivileged: access to the Docker socket is
root-equivalent). A test that checks something only the local backend has is marked `local_only` with
the reason.
Each mode's CLI starts its own policy proxy (deny-all default). Sandboxes are created through the
CLI exactly as a user would; helpers read `sandbox.json` to learn host-side facts (pids, uid).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from jupyter_openshell.proxy import ProxyClient

NOBODY = 65534
HERE = Path(__file__).parent
PYTHON = sys.executable


def _bwrap_works() -> bool:
    return shutil.which("bwrap") is not None


pytestmark = pytest.mark.skipif(not _bwrap_works(), reason="bubblewrap is not installed")


class Mode:
    def __init__(self, name: str, root: Path) -> None:
        self.label = name
        self.name, _, self.backend = name.partition("-")  # "root" | "user"; backend "" = local
        self.backend = self.backend or "local"
        self.root = root
        self.state = root / "state"
        self.inputs = root / "inputs"  # policy files, readable by the CLI's uid
        self.state.mkdir(mode=0o700)
        self.inputs.mkdir(mode=0o755)
        if self.name == "user":
            for path in (self.state, self.inputs):
                os.chown(path, NOBODY, NOBODY)

    def argv(self, *args: str) -> list[str]:
        base = [PYTHON, "-m", "jupyter_openshell", "sandbox", *args]
        if self.name == "user":
            return ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups", *base]
        return base

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["OPENSHELL_STATE_DIR"] = str(self.state)
        if self.name == "user":
            env["HOME"] = str(self.inputs)
        env.update(extra)
        return env

    @property
    def uid(self) -> int:
        return NOBODY if self.name == "user" else 0

    def cli(
        self,
        *args: str,
        input: str | None = None,
        timeout: float = 60,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            self.argv(*args),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(**(env or {})),
            cwd="/",
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"openshell sandbox {' '.join(args)} -> {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    def host_python(self, code: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run Python on the host as this mode's uid, with its state directory."""
        argv = [PYTHON, "-c", code]
        if self.name == "user":
            argv = ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups", *argv]
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=self.env(), cwd="/", check=True
        )

    def policy(self, text: str) -> str:
        path = self.inputs / f"policy-{uuid.uuid4().hex[:8]}.yaml"
        path.write_text(text)
        path.chmod(0o644)
        return str(path)

    def create(
        self,
        policy: str | None = None,
        name: str | None = None,
        workspace: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        name = name or f"sec-{uuid.uuid4().hex[:8]}"
        args = ["create", "--name", name, "--backend", self.backend]
        if policy is not None:
            args += ["--policy", self.policy(policy)]
        if workspace is not None:
            args += ["--workspace", str(workspace)]
        self.cli(*args, env=env)
        return name

    def workspace(self) -> Path:
        """A fresh directory of this mode's uid, outside its home, to give as --workspace."""
        path = self.root / f"ws-{uuid.uuid4().hex[:8]}"
        path.mkdir(mode=0o755)
        os.chown(path, self.uid, self.uid)
        return path

    def as_owner(self, argv: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a host tool as this mode's uid (what the user does later in the workspace)."""
        if self.name == "user":
            argv = ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups", *argv]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.inputs), "LANG": "C.UTF-8"}
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)

    def sh(
        self, name: str, script: str, timeout: float = 60, input: str | None = None
    ) -> subprocess.CompletedProcess:
        return self.cli("exec", name, "--", "sh", "-c", script, input=input, timeout=timeout, check=False)

    def python(self, name: str, code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return self.cli("exec", name, "--", "python3", "-", *args, input=code, timeout=timeout, check=False)

    def rm(self, name: str) -> None:
        self.cli("rm", name)

    def record(self, name: str) -> dict:
        return json.loads((self.state / "sandboxes" / name / "sandbox.json").read_text())

    def proxy(self) -> dict:
        return json.loads((self.state / "run" / "proxy.json").read_text())

    def close(self) -> None:
        self.cli("rm", "--all", check=False)
        ProxyClient(self.state).stop()


@pytest.fixture(scope="session")
def modes():
    base = Path(tempfile.mkdtemp(prefix="openshell-sec-"))
    base.chmod(0o755)
    made: dict[str, Mode] = {}

    def get(name: str) -> Mode:
        if name not in made:
            (base / name).mkdir(mode=0o755)
            made[name] = Mode(name, base / name)
        return made[name]

    yield get
    for mode in made.values():
        mode.close()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def docker_engine(scratch) -> None:
    """An answering Docker Engine (started where none runs) and the default image; skips without one."""
    from jupyter_openshell.testing.docker_engine import default_image, engine

    why = engine(scratch("dockerd-"))
    if why is not None:
        pytest.skip(f"no Docker Engine: {why}")
    default_image()


@pytest.fixture(params=["root", "user", "root-docker"])
def mode(request, modes) -> Mode:
    if request.param.startswith("root") and os.geteuid() != 0:
        pytest.skip("the root path needs root")
    if request.param == "user" and os.geteuid() != 0:
        pytest.skip("switching to an unprivileged uid needs root (setpriv)")
    if request.param == "root-docker":
        reason = request.node.get_closest_marker("local_only")
        if reason is not None:
            pytest.skip(f"local backend only: {reason.args[0]}")
        request.getfixturevalue("docker_engine")
    return modes(request.param)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "local_only(reason): checks what only the local backend has")


def processes_with(marker: str) -> list[int]:
    """Host pids whose command line contains `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(int(entry))
    return found


def processes_of_uid(uid: int, live_only: bool = False) -> list[int]:
    """Host pids owned by `uid` (without zombies when `live_only`)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid != uid:
                    continue
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if not (live_only and state == "Z"):
                found.append(int(entry))
    return found
