"""A Docker Engine and the default sandbox image for tests of the docker backend.

`engine(workdir)` returns None when an engine answers (DOCKER_HOST or the default socket) or after
starting `dockerd --bridge=none --iptables=false` (no sandbox ever needs a bridge; nothing is given a
network) on a socket in `workdir`, which it then exports as DOCKER_HOST; else the reason no engine can
be had (the caller skips with it). The dockerd it starts names `workdir` on its command line, so the
test session's final sweep (tests/conftest.py) stops it after the sandboxes are removed.
`default_image()` builds the default image once (cached by tag and content) and returns its name.
Test helpers only: production code must never start an engine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

_started: dict[str, object] = {}


def _answers() -> str | None:
    """None if an engine answers at DOCKER_HOST (or the default socket), else why not."""
    try:
        import docker
    except ImportError:
        return "the docker SDK is not installed (pip install 'jupyter-openshell[docker]')"
    try:
        client = docker.from_env(timeout=10)
        client.ping()
        client.close()
    except docker.errors.DockerException as exc:
        return str(exc)
    return None


def engine(workdir: Path) -> str | None:
    if "reason" in _started:
        return _started["reason"]  # type: ignore[return-value]
    why = _answers()
    if why is None or "SDK" in why:
        _started["reason"] = why
        return why
    dockerd = shutil.which("dockerd", path="/usr/sbin:/usr/bin:/sbin:/bin")
    if dockerd is None:
        why = f"no Docker Engine answers ({why}) and dockerd is not installed (scripts/setup.sh --test)"
    elif os.geteuid() != 0:
        why = f"no Docker Engine answers ({why}) and starting dockerd needs root"
    else:
        why = _start(dockerd, workdir)
    _started["reason"] = why
    return why


def _start(dockerd: str, workdir: Path) -> str | None:
    workdir.mkdir(parents=True, exist_ok=True)
    sock = workdir / "docker.sock"
    log = workdir / "dockerd.log"
    argv = [
        dockerd,
        "--bridge=none",
        "--iptables=false",
        "--ip-masq=false",
        "-H",
        f"unix://{sock}",
        "--pidfile",
        str(workdir / "dockerd.pid"),
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True
        )
    os.environ["DOCKER_HOST"] = f"unix://{sock}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if _answers() is None:
            _started["dockerd"] = proc
            return None
        time.sleep(0.2)
    proc.kill()
    os.environ.pop("DOCKER_HOST", None)
    tail = log.read_text(errors="replace")[-1500:]
    return f"dockerd did not start:\n{tail}"


def default_image() -> str:
    from jupyter_openshell.runtime.docker import _image

    if "image" not in _started:
        lines: list[str] = []
        _started["image"] = _image.build(log=lines.append)
        _started["build_log"] = lines
    return _started["image"]  # type: ignore[return-value]
