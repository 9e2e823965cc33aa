"""The demo notebook (examples/openshell-demo.ipynb) executed headless with nbclient on the OpenShell kernel.

Uses what `openshell demo` prepares (policy, secret, local upstream, proxy, kernelspec) and checks every
step's output: allowed GET, denied POST with its explanation, %%policy taking effect on the next cell, the
LLM call through the inference route without a key in the sandbox, and the two widgets.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from jupyter_openshell.cli import demo_cmd
from jupyter_openshell.proxy import ProxyClient

WIDGET = "application/vnd.jupyter.widget-view+json"


def _text(cell) -> str:
    out = []
    for o in cell.get("outputs", []):
        if o["output_type"] == "stream":
            out.append(o["text"])
        elif "data" in o:
            out.append(o["data"].get("text/plain", ""))
        elif o["output_type"] == "error":
            out.append("\n".join(o["traceback"]))
    return "".join(out)


def test_demo_notebook_runs_headless_on_the_openshell_kernel(tmp_path, monkeypatch, workspace):
    demo = demo_cmd.prepare(prefix=str(tmp_path / "prefix"), pool_size=0, workspace=workspace)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "prefix" / "share" / "jupyter"))
    try:
        path = workspace / demo_cmd.NOTEBOOK
        shutil.copy(demo_cmd.examples_dir() / demo_cmd.NOTEBOOK, path)
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata.kernelspec.name == demo_cmd.KERNEL_NAME
        NotebookClient(
            nb,
            timeout=120,
            kernel_name=demo_cmd.KERNEL_NAME,
            resources={"metadata": {"path": str(workspace)}},
        ).execute()
    finally:
        demo.stop()
    code = [c for c in nb.cells if c.cell_type == "code"]
    by_source = {c.source.splitlines()[0]: c for c in code}
    assert "running in sandbox: kernel-" in _text(code[0])
    assert "Lyon" in _text(code[1])  # the allowed GET
    denied = _text(code[2])
    assert "upload refused: HTTP 403" in denied
    assert "OpenShell denied POST http://127.0.0.2:8765/upload" in denied
    assert "%policy allow POST http://127.0.0.2:8765/upload" in denied
    assert "decision: deny" in _text(by_source["%policy explain POST {UP}/upload"])
    applied = _text(by_source["%%policy"])
    assert "applied (hot reload)" in applied and '+        - path: "/upload"' in applied
    assert "upload accepted: 200" in _text(code[5])  # the next cell: the new policy is in force
    llm = _text(code[6])
    assert "Hello from the local fake LLM" in llm and "The proxy added the key" in llm
    assert "any API key in this sandbox's environment: False" in llm
    assert any(WIDGET in o.get("data", {}) for o in code[7].outputs)  # TrafficMonitor
    assert any(WIDGET in o.get("data", {}) for o in code[8].outputs)  # GpuStatus
    assert not any(o["output_type"] == "error" for c in code for o in c.get("outputs", []))


@pytest.mark.parametrize("who", ["root", "unprivileged"])
def test_demo_check_mode_from_a_fresh_state_dir(who, scratch):
    """`openshell demo --check` from an empty state directory prints PASS per step and exits 0, as root
    and as uid 65534 (HOME and state directory its own, the venv not writable by it)."""
    if os.geteuid() != 0:
        pytest.skip("both paths are driven from root (setpriv for the unprivileged one)")
    uid = 65534 if who == "unprivileged" else None
    home = scratch("demo-", owner=uid)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "OPENSHELL_STATE_DIR": str(home / "state")}
    argv = [str(Path(sys.executable).parent / "openshell"), "demo", "--check"]
    if uid is not None:
        argv = ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups", *argv]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=240, cwd=home)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "  PASS  1. An allowed GET" in out and "  PASS  5. TrafficMonitor widget" in out
    assert "9/9 steps passed: PASS" in out and "FAIL" not in out
    assert not ProxyClient(home / "state").is_running()  # the check stops the proxy it started


def test_demo_explains_what_is_missing(monkeypatch):
    real_which = shutil.which

    def which(tool, **kw):
        return None if tool == "bwrap" else real_which(tool, **kw)

    monkeypatch.setattr(shutil, "which", which)
    with pytest.raises(SystemExit) as err:
        demo_cmd.run(argparse.Namespace(check=True))
    assert "bubblewrap (bwrap) is not installed" in str(err.value)
    assert "apt-get install bubblewrap" in str(err.value)
    monkeypatch.setattr(shutil, "which", real_which)
    monkeypatch.setitem(sys.modules, "nbclient", None)  # what a venv without the demo extras looks like
    with pytest.raises(SystemExit) as err:
        demo_cmd.run(argparse.Namespace(check=True))
    assert "'nbclient' is missing" in str(err.value) and "jupyter-openshell[demo]" in str(err.value)
