"""`openshell demo` as a new user runs it: it serves a working copy of the demo notebook (never the
checkout's tracked one), prints the notebook's URL with --no-browser, keeps a copy the user edited, and
Ctrl-C stops JupyterLab, its kernel's sandbox and the proxy it started.

Run as uid 65534 with its own HOME and state directory (the venv is not writable by it, so the demo
installs its kernelspec and enables the extension in that HOME, not in the test environment).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from jupyter_openshell.cli import demo_cmd
from jupyter_openshell.proxy import ProxyClient
from jupyter_openshell.runtime import get_backend
from jupyter_openshell.testing import free_port

NOBODY = 65534
URL_LINE = re.compile(r"openshell demo: open (http://(?:localhost|127\.0\.0\.1):\d+/lab/tree/openshell-demo\.ipynb\?token=\w+)")


class Demo:
    """`openshell demo --no-browser` as uid 65534; its output lines are collected as they come."""

    def __init__(self, home: Path, *extra: str):
        self.home, self.port, self.lines = home, free_port(), []
        env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "OPENSHELL_STATE_DIR": str(home / "state")}
        argv = ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
                str(Path(sys.executable).parent / "openshell"), "demo", "--no-browser",
                "--port", str(self.port), *extra]
        self.proc = subprocess.Popen(argv, env=env, cwd=home, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()

    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: re.Pattern, timeout: float = 120) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = pattern.search(self.output())
            if found:
                return found
            assert self.proc.poll() is None, self.output()[-4000:]
            time.sleep(0.2)
        raise AssertionError(f"no {pattern.pattern!r} in:\n{self.output()[-4000:]}")

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(120)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def _api(url: str, token: str, path: str, body: dict | None = None, method: str | None = None) -> dict:
    request = urllib.request.Request(
        f"{url}/api/{path}?token={token}", method=method or ("POST" if body is not None else "GET"),
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as resp:
        return json.loads(resp.read() or b"null")


def test_demo_serves_a_working_copy_prints_its_url_and_ctrl_c_leaves_nothing(scratch):
    if os.geteuid() != 0:
        pytest.skip("driven from root (setpriv for the unprivileged user the demo runs as)")
    tracked = demo_cmd.examples_dir() / demo_cmd.NOTEBOOK
    original = hashlib.sha256(tracked.read_bytes()).hexdigest()
    home = scratch("demo-lab-", owner=NOBODY)
    work = home / "openshell-demo"

    demo = Demo(home)
    try:
        link = demo.wait_for(URL_LINE).group(1)
        assert f"copied the demo notebook to {work / demo_cmd.NOTEBOOK}" in demo.output()
        with urllib.request.urlopen(link, timeout=60) as page:
            assert page.status == 200
        base, token = link.split("/lab/")[0], link.rsplit("token=", 1)[1]
        served = _api(base, token, f"contents/{demo_cmd.NOTEBOOK}")
        assert served["path"] == demo_cmd.NOTEBOOK and served["type"] == "notebook"
        # what JupyterLab does on open and save: a checkpoint, then the user's edit
        _api(base, token, f"contents/{demo_cmd.NOTEBOOK}/checkpoints", body={})
        edited = served["content"]
        edited["cells"][0]["source"] = "# my notes\n" + edited["cells"][0]["source"]
        _api(base, token, f"contents/{demo_cmd.NOTEBOOK}", method="PUT",
             body={"type": "notebook", "format": "json", "content": edited})
        kernel = _api(base, token, "kernels", body={"name": demo_cmd.KERNEL_NAME})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(i.name.startswith("kernel-") for i in _sandboxes(home)):
            time.sleep(0.2)
        kernels = [i for i in _sandboxes(home) if i.name.startswith("kernel-")]
        assert kernels and kernel["name"] == demo_cmd.KERNEL_NAME, demo.output()[-3000:]
        assert ProxyClient(home / "state").is_running()
    finally:
        code = demo.stop(signal.SIGINT)  # Ctrl-C
    assert code == 0, demo.output()[-4000:]
    assert "stopping JupyterLab and its kernels' sandboxes" in demo.output()
    assert [i.name for i in _sandboxes(home)] == [], demo.output()[-4000:]
    assert not ProxyClient(home / "state").is_running()  # the demo started it, the demo stopped it
    # the checkout is untouched: same bytes, no checkpoints; the copy holds the edit and its checkpoint
    assert hashlib.sha256(tracked.read_bytes()).hexdigest() == original
    assert not (tracked.parent / ".ipynb_checkpoints").exists()
    assert "# my notes" in (work / demo_cmd.NOTEBOOK).read_text()
    assert (work / ".ipynb_checkpoints").is_dir()

    again = Demo(home)
    try:
        again.wait_for(URL_LINE)
    finally:
        assert again.stop(signal.SIGTERM) == 0, again.output()[-4000:]
    assert f"keeping your edited {work / demo_cmd.NOTEBOOK}" in again.output()
    assert "# my notes" in (work / demo_cmd.NOTEBOOK).read_text()


def _sandboxes(home: Path) -> list:
    previous = os.environ["OPENSHELL_STATE_DIR"]
    os.environ["OPENSHELL_STATE_DIR"] = str(home / "state")
    try:
        return get_backend().list()
    finally:
        os.environ["OPENSHELL_STATE_DIR"] = previous


def test_demo_refuses_a_directory_inside_the_checkout(capsys):
    inside = demo_cmd.examples_dir() / "work"
    with pytest.raises(SystemExit) as err:
        demo_cmd.run(demo_cmd_args(dir=inside))
    assert "inside" in str(err.value) and "--dir" in str(err.value)
    assert not inside.exists()


def demo_cmd_args(**kw):
    import argparse

    return argparse.Namespace(check=False, no_browser=True, port=0, **kw)
