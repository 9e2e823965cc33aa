"""Runtime test fixtures: a private state directory, the real policy proxy started in it (trusting a
test CA, with test host names pinned to 127.0.0.1), recording upstream servers and the local backend.

The proxy runs in the same state directory the runtime uses, so sandboxes reach it through their
gateway sockets exactly as in production.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from jupyter_openshell.runtime import get_backend
from jupyter_openshell.testing import TestCA, UpstreamServer, start_proxy

NAMES = ["localhost", "api.example.com", "other.example.com", "127.0.0.1"]
PINS = {"api.example.com": "127.0.0.1", "other.example.com": "127.0.0.1"}

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


@pytest.fixture(scope="session")
def runtime_state():
    state = Path(tempfile.mkdtemp(prefix="openshell-rt-"))
    previous = os.environ.get("OPENSHELL_STATE_DIR")
    os.environ["OPENSHELL_STATE_DIR"] = str(state)
    yield state
    backend = get_backend()
    for info in backend.list():
        backend.destroy(info.name)
    backend.cleanup()  # also what a failed test may have orphaned
    if previous is None:
        os.environ.pop("OPENSHELL_STATE_DIR", None)
    else:
        os.environ["OPENSHELL_STATE_DIR"] = previous
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("rt-test-ca"))


@pytest.fixture(scope="session")
def upstream():
    with UpstreamServer() as srv:
        yield srv


@pytest.fixture(scope="session")
def upstream_tls(test_ca):
    with UpstreamServer(tls=test_ca.server_context(NAMES)) as srv:
        yield srv


@pytest.fixture(scope="session")
def proxy(runtime_state, test_ca):
    policy = runtime_state / "host-policy.yaml"
    policy.write_text("network:\n  egress:\n    - action: deny\n")
    run = start_proxy(runtime_state, policy, upstream_ca=test_ca.ca_path, resolve=PINS)
    yield run
    run.stop()


@pytest.fixture(scope="session")
def backend(proxy):
    return get_backend("local")


@pytest.fixture
def policy_file(tmp_path):
    def write(text: str) -> Path:
        path = tmp_path / f"policy-{len(list(tmp_path.iterdir()))}.yaml"
        path.write_text(text)
        return path

    return write
