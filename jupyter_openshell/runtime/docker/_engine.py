"""The connection to the Docker Engine: the `docker` SDK, imported only when a Docker sandbox is used.

`client()` is one `docker.DockerClient` per process, from the environment (`DOCKER_HOST`,
`DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`; default the local socket), checked with a ping. Failures are
`SandboxError`s that say what to install or start. Every container and image this package makes is
labelled under `LABEL`. It must never start or configure the engine itself (tests do, see
tests/backends/conftest.py), and never talk to a registry.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from .._types import SandboxError

LABEL = "org.jupyter-openshell"
LABEL_STATE = f"{LABEL}.state"  # the state directory whose sandbox this container is
LABEL_SANDBOX = f"{LABEL}.sandbox"  # the sandbox's name
LABEL_CREATED = f"{LABEL}.created"  # the sandbox instance (its record's "created")
LABEL_EXPOSED = f"{LABEL}.exposed"  # its exposed dir (workspace image, reserved uid), freed by `gc`

_lock = threading.Lock()
_client: Any = None


def where() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def sdk() -> Any:
    """The `docker` module (SandboxError when the SDK is not installed)."""
    try:
        import docker
    except ImportError:
        raise SandboxError(
            "the Docker backend needs the docker Python SDK: pip install 'jupyter-openshell[docker]'"
        ) from None
    return docker


def client() -> Any:
    """The engine's client (one per process); SandboxError when no engine answers."""
    global _client
    with _lock:
        if _client is None:
            docker = sdk()
            try:
                made = docker.from_env(timeout=120)
                made.ping()
            except docker.errors.DockerException as exc:
                raise SandboxError(
                    f"no Docker Engine answers at {where()} ({exc}). Start it (`dockerd`, or "
                    "`systemctl start docker`), or set DOCKER_HOST; access to its socket is root-equivalent, "
                    "so only users trusted with root may use the docker backend"
                ) from None
            _client = made
        return _client


def errors() -> Any:
    return sdk().errors
