"""`openshell proxy status|stop`: what a user sees about the proxy serving their state directory."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from jupyter_openshell.proxy import ProxyClient


def _cli(state, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENSHELL_STATE_DIR": str(state)}
    return subprocess.run([sys.executable, "-m", "jupyter_openshell", "proxy", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def test_status_reports_a_failed_reload_and_stop_stops(tmp_path):
    state = tmp_path / "state"
    idle = _cli(state, "status")
    assert idle.returncode == 1 and "no proxy is running" in idle.stdout
    assert "--policy FILE is required" in _cli(state, "run").stderr
    client = ProxyClient(state)
    client.ensure_running()
    try:
        version = client.status()["policies"]["default"]["version"]
        (state / "policies" / "default.yaml").write_text("network:\n  egress:\n    - hots: x\n")
        deadline = time.monotonic() + 10
        while not client.status()["policies"]["default"]["last_error"] and time.monotonic() < deadline:
            time.sleep(0.05)
        out = _cli(state, "status")
        assert out.returncode == 0, out.stderr
        assert f"default: version {version} (enforce)" in out.stdout
        assert "last reload failed, the version above stays in force" in out.stdout
        assert "did you mean 'host'" in out.stdout
        stopped = _cli(state, "stop")
        assert stopped.returncode == 0 and "stopped" in stopped.stdout
        assert not client.is_running()
    finally:
        client.stop()
