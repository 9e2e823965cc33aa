"""`openshell cluster up|down|status` on this machine's Docker Engine, where the K3s image is not present
and no registry is reachable: `up` says how to provide the image and starts nothing (no container, no
volume, no kubeconfig). Control: with an image that exists but is no K3s, `up` does create the volume and
the container, and then removes both when K3s does not start: nothing is left half-started either way.
(A cluster that actually runs needs the K3s image: not on these machines.)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import pytest

from jupyter_openshell.testing import free_port


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from jupyter_openshell.testing.docker_engine import default_image, engine

    why = engine(tmp_path_factory.mktemp("dockerd-cluster"))
    if why is not None:
        pytest.skip(f"no Docker Engine: {why}")
    import docker

    client = docker.from_env()
    return client, default_image()


def _leftovers(client, state) -> list[str]:
    import docker

    out = []
    with contextlib.suppress(docker.errors.NotFound):
        out.append(f"container {client.containers.get('openshell-k3s').status}")
    with contextlib.suppress(docker.errors.NotFound):
        out.append(f"volume {client.volumes.get('openshell-k3s-data').name}")
    out += [str(p) for p in (state / "kubernetes").glob("*") if p.name in ("kubeconfig", "cluster.json")]
    return out


def _cli(*args: str, state) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_openshell", "cluster", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
        env={**os.environ, "OPENSHELL_STATE_DIR": str(state)},
    )


def test_up_without_the_k3s_image_says_how_to_provide_it_and_starts_nothing(engine, state):
    client, _ = engine
    assert _leftovers(client, state) == []
    out = _cli("up", "--port", str(free_port()), state=state)
    assert out.returncode == 1
    for words in (
        "rancher/k3s:v1.31.4-k3s1",
        "is not on this machine",
        "docker save",
        "docker load -i",
        "--airgap-images",
        "Nothing was started",
    ):
        assert words in out.stderr, (words, out.stderr)
    assert _leftovers(client, state) == []
    status = _cli("status", state=state)
    assert status.returncode == 1 and "no cluster" in status.stdout


def test_up_that_fails_after_starting_removes_what_it_made(engine, state, monkeypatch):
    """Control: an image that is there but is no K3s gets as far as a volume and a container; both go."""
    from jupyter_openshell.cluster import _k3s
    from jupyter_openshell.runtime import SandboxError

    client, sandbox = engine
    client.images.get(sandbox).tag("openshell-test/not-k3s", "1")
    made = []
    from docker.models.containers import ContainerCollection
    from docker.models.volumes import VolumeCollection

    real_volume, real_container = VolumeCollection.create, ContainerCollection.create

    def volume(self, *a, **kw):
        made.append("volume")
        return real_volume(self, *a, **kw)

    def container(self, *a, **kw):
        made.append("container")
        return real_container(self, *a, **kw)

    monkeypatch.setattr(VolumeCollection, "create", volume)
    monkeypatch.setattr(ContainerCollection, "create", container)
    monkeypatch.setattr(_k3s, "_docker", lambda: client)
    with pytest.raises(SandboxError):
        _k3s.up(port=free_port(), image="openshell-test/not-k3s:1", sandbox_image=sandbox, log=lambda _: None)
    assert made == ["volume", "container"]  # it got that far ...
    assert _leftovers(client, state) == []  # ... and left nothing
    client.images.remove("openshell-test/not-k3s:1")
