"""Host-side processes never import or run what a sandbox (or another user) could have written.

A workspace is writable from inside its sandbox, and users start `openshell` and Jupyter from their
notebook directories. Planted there: a `jupyter_openshell/` package, `mitmproxy/`, `sitecustomize.py`
and `ipykernel_launcher.py`, each writing a marker when imported. Also a poisoned environment in the
process that starts the proxy (PYTHONPATH, PYTHONSTARTUP, PYTHONHOME, LD_PRELOAD of a real library, a
relative PATH entry). The proxy (started by `openshell sandbox create`, by a server's supervisor or by
the client API) and Jupyter's kernels of other kernelspecs must run none of it, as root and as an
unprivileged user. Each test has its control: the same planted files and environment DO run under a
naive start (`python -m ...` from the workspace, inheriting the environment), so the markers would show.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from jupyter_client import BlockingKernelClient

from jupyter_openshell.proxy import ProxyClient

from .conftest import NOBODY

BIN = Path(sys.executable).parent  # the venv's console scripts: what a user runs
PAYLOAD = "import os\nopen(os.path.join({markers!r}, {name!r} + '-' + str(os.getpid())), 'w').close()\n"


def _plant(workspace: Path, markers: Path) -> None:
    """The files a sandbox would write into its workspace to be run on the host."""
    for package in ("jupyter_openshell", "mitmproxy"):
        (workspace / package).mkdir()
        for module in ("__init__", "__main__"):
            (workspace / package / f"{module}.py").write_text(PAYLOAD.format(markers=str(markers),
                                                                             name=package))
    for module in ("sitecustomize", "ipykernel_launcher", "usercustomize"):
        (workspace / f"{module}.py").write_text(PAYLOAD.format(markers=str(markers), name=module))


def _dirs(mode, tag: str) -> tuple[Path, Path]:
    workspace, markers = mode.root / f"ws-{tag}", mode.root / f"markers-{tag}"
    for path in (workspace, markers):
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(mode=0o755)
    markers.chmod(0o777)
    _plant(workspace, markers)
    if mode.name == "user":
        for path in (workspace, *workspace.rglob("*")):
            os.chown(path, NOBODY, NOBODY)
    return workspace, markers


def _wrap(mode) -> list[str]:
    return ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups"] \
        if mode.name == "user" else []


def _preload_library(where: Path, markers: Path) -> Path | None:
    """A real shared library whose constructor writes a marker (LD_PRELOAD); None without a C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    src = where / "evil.c"
    src.write_text(textwrap.dedent(f"""
        #include <stdio.h>
        #include <unistd.h>
        __attribute__((constructor)) static void evil(void) {{
            char p[512]; snprintf(p, sizeof p, "{markers}/ld_preload-%d", getpid());
            FILE *f = fopen(p, "w"); if (f) fclose(f);
        }}"""))
    lib = where / "libevil.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True, capture_output=True)
    lib.chmod(0o755)
    return lib


def _poison(workspace: Path, lib: Path | None) -> dict[str, str]:
    startup = workspace / "startup.py"
    env = {"PYTHONPATH": f"{workspace}:.", "PYTHONSTARTUP": str(startup), "PYTHONHOME": str(workspace),
           "PATH": f".:{workspace}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    if lib is not None:
        env["LD_PRELOAD"] = str(lib)
    return env


def _markers(markers: Path) -> list[str]:
    return sorted(p.name.rsplit("-", 1)[0] for p in markers.iterdir())


def _wait_stopped(state: Path) -> None:
    ProxyClient(state).stop()
    assert not ProxyClient(state).is_running()


def test_sandbox_create_from_a_planted_workspace_runs_nothing(mode):
    workspace, markers = _dirs(mode, "cli")
    _wait_stopped(mode.state)  # `create` then starts the proxy itself, from the workspace
    env = mode.env()
    name = f"hp-{secrets.token_hex(3)}"
    proc = subprocess.run([*_wrap(mode), str(BIN / "openshell"), "sandbox", "create", "--name",
                           name, "--workspace", str(workspace), "--backend", mode.backend],
                          capture_output=True, text=True, timeout=120, env=env, cwd=workspace)
    assert proc.returncode == 0, proc.stderr
    assert ProxyClient(mode.state).is_running()
    assert _markers(markers) == [], "the proxy imported code from the workspace"
    mode.rm(name)
    # control: a naive `python -m` from the workspace runs the planted package (and sitecustomize)
    subprocess.run([*_wrap(mode), sys.executable, "-m", "jupyter_openshell", "--help"],
                   capture_output=True, timeout=60, env=env, cwd=workspace)
    assert "jupyter_openshell" in _markers(markers)


@pytest.mark.local_only("host processes only (the proxy and its workers): no sandbox backend involved")
def test_proxy_children_never_inherit_a_poisoned_environment(mode):
    workspace, markers = _dirs(mode, "env")
    lib = _preload_library(mode.root, markers)
    _wait_stopped(mode.state)
    poison = _poison(workspace, lib)
    # The launcher itself starts clean (-I, no poison); then, like any host process of the user's with
    # a bad environment and the workspace as working directory, it asks for the proxy (two workers).
    launcher = textwrap.dedent(f"""
        import os, sys
        os.environ.update({poison!r})
        os.chdir({str(workspace)!r})
        from jupyter_openshell.proxy import ProxyClient
        ProxyClient({str(mode.state)!r}).ensure_running(workers=2)
        print("started")
    """)
    out = subprocess.run([*_wrap(mode), sys.executable, "-I", "-c", launcher], capture_output=True,
                         text=True, timeout=120, env=mode.env(), cwd="/")
    assert out.returncode == 0 and "started" in out.stdout, out.stderr
    status = ProxyClient(mode.state).status()
    assert status["workers"] == 2 and status["policies_agree"]
    assert _markers(markers) == [], "a proxy process ran planted code"
    # control: a child started the naive way (inherit everything) runs each of them
    naive = launcher.replace(
        f"ProxyClient({str(mode.state)!r}).ensure_running(workers=2)",
        "import subprocess; subprocess.run([sys.executable, '-m', 'jupyter_openshell', '--help'], "
        "env={**os.environ, 'PYTHONHOME': ''}, capture_output=True)")
    subprocess.run([*_wrap(mode), sys.executable, "-I", "-c", naive], capture_output=True, timeout=120,
                   env=mode.env(), cwd="/")
    seen = _markers(markers)
    assert "jupyter_openshell" in seen and "sitecustomize" in seen
    if lib is not None:
        assert "ld_preload" in seen


@pytest.mark.local_only("host processes only (Jupyter and a stock kernel): no sandbox backend involved")
def test_jupyter_server_and_its_other_kernels_run_nothing_planted(mode, tmp_path):
    """`jupyter lab` started from a planted notebook directory: the extension's proxy supervisor and a
    stock `python3` kernel (cwd = that directory) import nothing from it."""
    workspace, markers = _dirs(mode, "jupyter")
    _wait_stopped(mode.state)
    runtime = mode.root / f"jrt-{secrets.token_hex(3)}"
    runtime.mkdir(mode=0o700)
    if mode.name == "user":
        os.chown(runtime, NOBODY, NOBODY)
    port, token = _free_port(), secrets.token_hex(16)
    env = {**mode.env(), "JUPYTER_RUNTIME_DIR": str(runtime), "JUPYTER_CONFIG_DIR": str(runtime / "cfg"),
           "JUPYTER_DATA_DIR": str(runtime / "data"), "HOME": str(runtime)}
    argv = [*_wrap(mode), str(BIN / "jupyter-server"), "--no-browser", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={workspace}"]
    if mode.name == "root":
        argv.append("--allow-root")
    log = tmp_path / "server.log"
    seen: list[dict] = []
    with open(log, "wb") as out:
        server = subprocess.Popen(argv, env=env, stdout=out, stderr=out, cwd=workspace)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: _get(f"{base}/api/status?token={token}"), server, log)
        _wait_for(lambda: ProxyClient(mode.state).is_running(), server, log)  # its supervisor started it
        kernel = _post(f"{base}/api/kernels?token={token}", {"name": "python3"})
        client = BlockingKernelClient(connection_file=str(runtime / f"kernel-{kernel['id']}.json"))
        client.load_connection_file()
        client.start_channels()
        try:
            _wait_for(lambda: _ready(client), server, log)  # the real ipykernel answers
            reply = client.execute_interactive("import os, sys; print(os.environ.get('PYTHONSAFEPATH'))",
                                               timeout=30, output_hook=lambda msg: seen.append(msg))
        finally:
            client.stop_channels()
        assert reply["content"]["status"] == "ok"
        assert any(m["content"].get("text", "").strip() == "1" for m in seen)
        assert _markers(markers) == [], f"planted code ran: {_markers(markers)}"
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    # control: the same kernel command started the way Jupyter would without the extension runs it
    subprocess.run([*_wrap(mode), sys.executable, "-m", "ipykernel_launcher", "--help"], capture_output=True,
                   timeout=60, env=env, cwd=workspace)
    assert "ipykernel_launcher" in _markers(markers)


def _ready(client: BlockingKernelClient) -> bool:
    try:
        client.wait_for_ready(timeout=10)
    except RuntimeError:  # its heartbeat is not answering yet
        return False
    return True


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read() or b"{}")
    except OSError:
        return {}


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def _wait_for(check, server: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if server.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"server or kernel did not come up:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)
