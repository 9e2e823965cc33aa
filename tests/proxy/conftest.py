"""Fixtures for proxy tests: a test CA, recording upstream servers (HTTP and HTTPS), a fake OpenAI
server, `make_proxy(policy_text, ...)` that runs the real proxy as a subprocess, and `stock_proxy`
(unmodified mitmproxy, the control of attack tests)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
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


class StockProxy:
    """mitmproxy as shipped (`mitmdump`, none of our addons or protocol fixes): the control for attack
    tests, showing that the attack does what the test looks for where our protections are absent."""

    def __init__(self, confdir: Path):
        from jupyter_openshell.testing.proxy import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ca_cert = confdir / "mitmproxy-ca-cert.pem"
        mitmdump = Path(sys.executable).with_name("mitmdump")
        self.proc = subprocess.Popen(
            [str(mitmdump), "-q", "--listen-host", "127.0.0.1", "--listen-port", str(self.port),
             "--set", f"confdir={confdir}", "--set", "connection_strategy=lazy",
             "--set", "ssl_insecure=true"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("mitmdump did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def stock_proxy(tmp_path_factory):
    proxy = StockProxy(tmp_path_factory.mktemp("stock-mitmproxy"))
    yield proxy
    proxy.stop()


def flow_records(proxy: ProxyRun) -> list[dict]:
    """Every record of the proxy's flow log, oldest first."""
    path = proxy.state_dir / "flows" / "flows.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
