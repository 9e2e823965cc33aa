"""The `pypi` preset lets `pip download` reach a package index through the real proxy; without it the
same pip command is denied. The index is local: an HTTPS server on 127.0.0.1:443 in a private network
namespace, serving pypi.org and files.pythonhosted.org (pinned there with `--resolve`) and one tiny
wheel (see pip_index_scenario.py). Port 443 matters: the preset allows that port only."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIO = Path(__file__).with_name("pip_index_scenario.py")
POLICIES = {
    # the preset; `addresses` lets its rules reach the local index (loopback is refused unless named)
    "preset": 'network:\n  egress:\n    - preset: pypi\n      addresses: ["127.0.0.1"]\n    - action: deny\n',
    "no-preset": "network:\n  egress:\n    - action: deny\n",
    # the preset alone: its rules never name loopback, so the address check refuses the local index
    "preset-no-address": "network:\n  egress:\n    - preset: pypi\n    - action: deny\n",
}


def _netns_ok() -> str | None:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return "needs unshare (util-linux) and ip (iproute2)"
    probe = subprocess.run(["unshare", "-r", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"this machine does not allow unprivileged user+network namespaces: {probe.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def pip_runs():
    reason = _netns_ok()
    if reason:
        pytest.skip(reason)
    run = subprocess.run(["unshare", "-r", "-n", sys.executable, str(SCENARIO), json.dumps(POLICIES)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_the_pypi_preset_lets_pip_download_reach_the_index(pip_runs):
    got = pip_runs["preset"]
    assert got["returncode"] == 0 and got["wheel_ok"], got["pip_output"]
    seen = {(f["method"], f["host"], f["path"].rsplit("/", 1)[0], f["decision"]) for f in got["flows"]}
    assert ("GET", "pypi.org", "/simple/tinypkg", "allow") in seen
    assert ("GET", "files.pythonhosted.org", "/packages/ab/cd", "allow") in seen
    assert all("preset pypi" in f["rule"] for f in got["flows"] if f["decision"] == "allow")


def test_control_without_the_preset_the_same_pip_command_is_denied(pip_runs):
    got = pip_runs["no-preset"]
    assert got["returncode"] != 0 and not got["downloaded"]
    denied = [f for f in got["flows"] if f["host"] == "pypi.org"]
    assert denied and all(f["decision"] == "deny" and f["status"] == 403 for f in denied)
    assert denied[0]["rule"] == "network.egress[0] (deny, line 3): any host, any port"


def test_the_preset_does_not_open_loopback_by_itself(pip_runs):
    got = pip_runs["preset-no-address"]
    assert got["returncode"] != 0 and not got["downloaded"]
    refused = [f for f in got["flows"] if f["host"] == "pypi.org"]
    assert refused and all(f["rule"] == "address check" and "loopback" in f["reason"] for f in refused)
