"""`openshell secret set|ls|rm`: the stored secret is what the proxy injects, and the CLI never shows it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import httpx

from .test_inference import POLICY, REAL_KEY


def _cli(state, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENSHELL_STATE_DIR": str(state)}
    return subprocess.run([sys.executable, "-m", "jupyter_openshell", "secret", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=60)


def test_secret_set_is_injected_and_never_printed(make_proxy, tmp_path, fake_openai, other_upstream):
    state = tmp_path / "state"
    out = _cli(state, "set", "openai-api-key", stdin=REAL_KEY + "\n")
    assert out.returncode == 0, out.stderr
    path = state / "secrets" / "openai-api-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == REAL_KEY + "\n"
    listing = _cli(state, "ls")
    assert "openai-api-key" in listing.stdout
    for res in (out, listing):
        assert REAL_KEY not in res.stdout + res.stderr

    fake_openai.clear()
    proxy = make_proxy(POLICY.format(port=fake_openai.port, other_port=other_upstream.port),
                       resolve={"llm.test": "127.0.0.1"}, state=state)
    with httpx.Client(proxy=proxy.url, trust_env=False) as client:
        reply = client.get("http://inference.local/v1/models", headers={"Authorization": "Bearer caller"})
    assert reply.status_code == 200 and REAL_KEY not in reply.text
    seen = [v for r in fake_openai.requests for k, v in r.headers if k.lower() == "authorization"]
    assert seen == [f"Bearer {REAL_KEY}"]

    assert _cli(state, "rm", "openai-api-key").returncode == 0
    assert not path.exists()


def test_secret_cli_refuses_bad_input(tmp_path):
    state = tmp_path / "state"
    bad = _cli(state, "set", "../escape", stdin="x")
    assert bad.returncode == 1 and "invalid secret name" in bad.stderr
    assert not (tmp_path / "escape").exists()
    empty = _cli(state, "set", "k", stdin="  \n")
    assert empty.returncode == 1 and "empty value" in empty.stderr
    missing = _cli(state, "rm", "nope")
    assert missing.returncode == 1 and "not found" in missing.stderr
