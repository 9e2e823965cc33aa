"""Fixtures of the backend conformance suite: every test runs once per backend (local, docker).

`backend_name` is parametrized; the docker one needs an engine (an answering one, or a `dockerd
--bridge=none --iptables=false` these fixtures start, see `jupyter_openshell.testing.docker_engine`) and the
default image (built once, cached by content); it is skipped, with the reason, only where no engine can be
had. The suite has its own state directory, the real policy proxy in it (test names pinned to 127.0.0.1)
and a recording upstream on loopback.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (jp_* fixtures for the REST lifecycle)

from jupyter_openshell.runtime import get_backend
from jupyter_openshell.testing import UpstreamServer, start_proxy
from jupyter_openshell.testing.docker_engine import default_image, engine

PINS = {"api.example.com": "127.0.0.1"}
BACKENDS = ["local", "docker"]


@pytest.fixture(scope="session")
def docker_ready(scratch) -> str:
    """The default image's name, once an engine answers; skips (with the reason) where none can be had."""
    why = engine(scratch("dockerd-"))
    if why is not None:
        pytest.skip(f"no Docker Engine: {why}")
    return default_image()


@pytest.fixture(scope="module")
def conformance_state(scratch):
    state = scratch("conformance-")
    state.chmod(0o700)
    previous = os.environ.get("OPENSHELL_STATE_DIR")
    os.environ["OPENSHELL_STATE_DIR"] = str(state)
    policy = state / "host-policy.yaml"
    policy.write_text("network:\n  egress:\n    - action: deny\n")
    run = start_proxy(state, policy, resolve=PINS)
    yield state
    run.stop()
    if previous is None:
        os.environ.pop("OPENSHELL_STATE_DIR", None)
    else:
        os.environ["OPENSHELL_STATE_DIR"] = previous


@pytest.fixture(params=BACKENDS)
def backend_name(request, conformance_state) -> str:
    if shutil.which("bwrap") is None and request.param == "local":
        pytest.skip("bubblewrap is not installed")
    if request.param == "docker":
        request.getfixturevalue("docker_ready")
    return request.param


@pytest.fixture
def backend(backend_name):
    return get_backend(backend_name)


@pytest.fixture(scope="session")
def upstream():
    with UpstreamServer() as srv:
        yield srv


@pytest.fixture
def workspace(scratch):
    """A notebook directory every sandbox uid can reach (pytest's tmp_path is under a 0700 directory)."""
    path = scratch("ws-")
    path.chmod(0o755)
    return Path(path)
