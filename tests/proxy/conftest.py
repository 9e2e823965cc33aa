"""Fixtures for proxy tests: a test CA, recording upstream servers (HTTP and HTTPS), a fake OpenAI
server, and `make_proxy(policy_text, ...)` that runs the real proxy as a subprocess."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from jupyter_openshell.testing import FakeOpenAI, ProxyRun, TestCA, UpstreamServer, start_proxy

NAMES = ["localhost", "api.example.com", "other.example.com", "llm.test", "127.0.0.1"]


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("test-ca"))


@pytest.fixture(scope="module")
def upstream():
    with UpstreamServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def upstream_tls(test_ca):
    with UpstreamServer(tls=test_ca.server_context(NAMES)) as srv:
        yield srv


@pytest.fixture(scope="module")
def other_upstream():
    with UpstreamServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def fake_openai(test_ca, other_upstream):
    srv = FakeOpenAI(tls=test_ca.server_context(NAMES), redirect_to=other_upstream.url("/stolen"))
    with srv:
        yield srv


@pytest.fixture
def make_proxy(tmp_path, test_ca):
    runs: list[ProxyRun] = []

    def make(policy: str, *, resolve: dict[str, str] | None = None, env: dict[str, str] | None = None,
             workers: int = 1, state: Path | None = None, extra: list[str] | None = None) -> ProxyRun:
        state_dir = state or tmp_path / f"state{len(runs)}"
        state_dir.mkdir(mode=0o700, exist_ok=True)
        policy_file = state_dir / "policy.yaml"
        policy_file.write_text(policy)
        run = start_proxy(state_dir, policy_file, upstream_ca=test_ca.ca_path, resolve=resolve, env=env,
                          workers=workers, extra=extra)
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.stop()


def curl(proxy: ProxyRun, url: str, *args: str) -> tuple[int, str]:
    """Run curl through the proxy; returns (status, body)."""
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "--noproxy", "", "-x", proxy.url,
         "--cacert", str(proxy.ca_bundle),
         "-w", "\n%{http_code}", *args, url],
        capture_output=True, text=True, timeout=30, env={k: v for k, v in os.environ.items()
                                                          if "proxy" not in k.lower()})
    body, _, code = out.stdout.rpartition("\n")
    return int(code or 0), body
