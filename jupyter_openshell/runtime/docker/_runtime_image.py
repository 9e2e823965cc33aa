"""The runtime layer: any image plus the agent and this package, checked once per image.

A sandbox never runs the image it was given directly: `prepare(image)` commits, on top of it, one small
layer holding `/opt/openshell/agent` (PID 1 `_init.py` and the agent's stdlib-only modules) and
`/opt/openshell/lib/jupyter_openshell` (this package's Python files, for the OpenShell kernel),
compiled by the image's own Python. The same container run probes the image: its python3 (version,
path), /bin/sh and ipykernel. The result is an image `jupyter-openshell/runtime:<image id>-<code hash>`
whose label holds the probe, so each (image, package version) pair is prepared once per engine. No
host path is mounted for this: the files are copied in. It must never prepare an image without a
usable python3, and never run the probe with a network.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .._types import SandboxError
from . import _engine, _profile

REPO = "jupyter-openshell/runtime"
LABEL_PROBE = f"{_engine.LABEL}.probe"  # hex of the probe's JSON (quote-free in a LABEL)
LABEL_BASE = f"{_engine.LABEL}.base"
ROOT = "/opt/openshell"
AGENT_DIR = f"{ROOT}/agent"
LIB_DIR = f"{ROOT}/lib"
MIN_PYTHON = (3, 10)
AGENT_FILES = ("_agent.py", "_wire.py", "_landlock.py")
PROBE = """\
import compileall, importlib.util, json, os, sys
out = {"python": list(sys.version_info[:3]), "executable": sys.executable}
out["sh"] = os.access("/bin/sh", os.X_OK)
out["ipykernel"] = all(importlib.util.find_spec(m) for m in ("ipykernel", "zmq"))
out["kernel_extras"] = [m for m in ("nh3", "mistune", "yaml", "ruamel.yaml")
                        if not importlib.util.find_spec(m.split(".")[0])]
if sys.version_info >= (3, 10):
    out["compiled"] = bool(compileall.compile_dir("/opt/openshell", quiet=2))
print(json.dumps(out))
"""
_lock = threading.Lock()


@dataclass(frozen=True)
class RuntimeImage:
    tag: str
    image: str  # what the user named
    image_id: str
    python: str  # absolute path of python3 inside
    version: tuple[int, ...]
    ipykernel: bool
    kernel_extras: tuple[str, ...]  # importable modules the kernel's magics use that the image lacks
    env: dict  # the image's own environment (PATH ...)

    def kernel_missing(self) -> str | None:
        """Why this image cannot run the OpenShell kernel, or None."""
        if self.ipykernel:
            return None
        return (
            f"image {self.image} has no ipykernel (and pyzmq), which the OpenShell kernel needs: add "
            "`RUN python3 -m pip install ipykernel` to its Dockerfile and rebuild it, or use the default "
            "image (`openshell image build`)"
        )


def _package_root() -> Path:
    return Path(__file__).resolve().parents[2]


@cache
def _files() -> tuple[tuple[str, bytes], ...]:
    """(path inside the image, content) of everything the layer holds, in a fixed order."""
    root = _package_root()
    out = []
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" not in path.parts:
            out.append(
                (f"{LIB_DIR}/jupyter_openshell/{path.relative_to(root).as_posix()}", path.read_bytes())
            )
    runtime = root / "runtime"
    for name in AGENT_FILES:
        out.append((f"{AGENT_DIR}/{name}", (runtime / name).read_bytes()))
    out.append((f"{AGENT_DIR}/_init.py", (runtime / "docker" / "_init.py").read_bytes()))
    return tuple(out)


@cache
def code_hash() -> str:
    digest = hashlib.sha256()
    for path, data in _files():
        digest.update(path.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


def _archive() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dirs = set()
        for path, data in _files():
            parts = path.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            info = tarfile.TarInfo(path.strip("/"))
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _from_labels(image: str, found: object) -> RuntimeImage:
    labels = found.labels or {}  # type: ignore[attr-defined]
    probe = json.loads(bytes.fromhex(labels[LABEL_PROBE]))
    env = dict(e.split("=", 1) for e in (found.attrs.get("Config") or {}).get("Env") or [] if "=" in e)  # type: ignore[attr-defined]
    return RuntimeImage(
        tag=found.tags[0] if found.tags else found.id,  # type: ignore[attr-defined]
        image=image,
        image_id=labels.get(LABEL_BASE, ""),
        python=probe["executable"],
        version=tuple(probe["python"]),
        ipykernel=bool(probe["ipykernel"]),
        kernel_extras=tuple(probe.get("kernel_extras") or ()),
        env=env,
    )


def _no_python(image: str, why: str) -> SandboxError:
    return SandboxError(
        f"image {image} cannot run a sandbox: {why}. The sandbox's agent needs python3 >= "
        f"{'.'.join(map(str, MIN_PYTHON))} on the image's PATH and /bin/sh: add them (e.g. `RUN apt-get "
        "install -y python3` on Debian/Ubuntu, or start FROM python:3.11-slim), or use the default image "
        "(`openshell image build`)"
    )


def prepare(image: str) -> RuntimeImage:
    """The runtime image of `image` (made now if this engine has none for this package version)."""
    client = _engine.client()
    errors = _engine.errors()
    try:
        base = client.images.get(image)
    except errors.ImageNotFound:
        from ._image import default_image

        hint = (
            "build it with `openshell image build`"
            if image == default_image()
            else f"pull or build it first (`docker pull {image}`)"
        )
        raise SandboxError(
            f"image {image} is not on this Docker Engine ({_engine.where()}): {hint}"
        ) from None
    tag = f"{REPO}:{base.id.split(':')[-1][:12]}-{code_hash()[:12]}"
    with _lock:
        try:
            found = client.images.get(tag)
        except errors.ImageNotFound:
            found = _make(client, image, base, tag)
    runtime = _from_labels(image, found)
    if runtime.version < MIN_PYTHON:
        raise _no_python(image, f"its python3 is {'.'.join(map(str, runtime.version))}")
    return runtime


def _make(client: object, image: str, base: object, tag: str) -> object:
    errors = _engine.errors()
    try:
        container = client.containers.create(  # type: ignore[attr-defined]
            base.id,  # type: ignore[attr-defined]
            entrypoint=["python3", "-I", "-c", PROBE],
            command=[],
            user="0:0",
            network_mode="none",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges", f"seccomp={_profile.profile_json()}"],
            labels={_engine.LABEL: "prepare"},
            working_dir="/",
        )
    except errors.APIError as exc:
        raise SandboxError(f"cannot prepare image {image}: {exc.explanation or exc}") from None
    try:
        container.put_archive("/", _archive())
        try:
            container.start()
        except errors.APIError as exc:
            raise _no_python(image, f"python3 does not start ({exc.explanation or exc})") from None
        result = container.wait(timeout=300)
        out = container.logs(stdout=True, stderr=False).decode(errors="replace").strip()
        if result.get("StatusCode") != 0 or not out:
            err = container.logs(stdout=False, stderr=True).decode(errors="replace")[-2000:]
            raise _no_python(image, f"the probe failed (exit {result.get('StatusCode')}): {err.strip()}")
        probe = json.loads(out.splitlines()[-1])
        if not probe.get("sh"):
            raise _no_python(image, "it has no /bin/sh")
        labels = {LABEL_PROBE: json.dumps(probe).encode().hex(), LABEL_BASE: base.id}  # type: ignore[attr-defined]
        repository, _, version = tag.partition(":")
        changes = [f"LABEL {k}={v}" for k, v in labels.items()]
        container.commit(repository=repository, tag=version, changes=changes)
    finally:
        container.remove(force=True)
    return client.images.get(tag)  # type: ignore[attr-defined]
