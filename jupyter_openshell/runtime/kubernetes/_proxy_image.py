"""The in-cluster proxy's image, `jupyter-openshell/proxy:<version>`: the default sandbox image (the Docker
backend's builder: Debian, python3) plus one layer holding this package and the proxy's dependencies
(mitmproxy, the kubernetes client, the YAML parsers) in the image Python's site directory (so `python3
-I` finds them), installed by the host's pip for the image's Python (wheels only).

Built by `openshell image build --proxy` (and `openshell cluster up`), once per content (label). Nothing
of the image runs on the host; nothing is pushed. It must never put a key or a state file in the image.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import jupyter_openshell

from .._types import SandboxError

REPO = "jupyter-openshell/proxy"
SITE = "/usr/local/lib/python{}/dist-packages"  # Debian's site directory for local installs
PACKAGES = ("mitmproxy>=11.0.2,<13", "kubernetes>=31,<38", "ruamel.yaml>=0.17", "pyyaml>=6", "psutil>=5.9")
LABEL = "org.jupyter-openshell.proxy-content"


def default_tag() -> str:
    return f"{REPO}:{jupyter_openshell.__version__}"


def _package_tar(site: Path, python: str) -> bytes:
    root = Path(jupyter_openshell.__file__).resolve().parent
    target = SITE.format(python).lstrip("/")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(str(site), arcname=target)
        tar.add(
            str(root),
            arcname=f"{target}/jupyter_openshell",
            filter=lambda t: None if "__pycache__" in t.name else t,
        )
    return buf.getvalue()


def _content(base_id: str) -> str:
    """A hash of what goes in: the base image, the packages, this package's sources."""
    digest = hashlib.sha256(repr((base_id, PACKAGES)).encode())
    root = Path(jupyter_openshell.__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build(tag: str | None = None, *, log: Callable[[str], None] = print) -> str:
    from ..docker import _engine
    from ..docker._image import default_image
    from ..docker._runtime_image import prepare

    tag = tag or default_tag()
    client = _engine.client()
    errors = _engine.errors()
    base_name = default_image()
    try:
        base = client.images.get(base_name)
    except errors.ImageNotFound:
        raise SandboxError(
            f"the proxy image starts from {base_name}: build it first (`openshell image build`)"
        ) from None
    content = _content(base.id)
    with contextlib.suppress(errors.ImageNotFound):
        if (client.images.get(tag).labels or {}).get(LABEL) == content:
            log(f"{tag} is up to date")
            return tag
    log(f"building {tag} from {base_name}")
    with tempfile.TemporaryDirectory(prefix="openshell-proxy-image-") as tmp:
        site = Path(tmp, "site")
        argv = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-warn-script-location",
            "--target",
            str(site),
            *PACKAGES,
        ]
        image_python = ".".join(map(str, prepare(base_name).version[:2]))
        if (
            image_python != f"{sys.version_info.major}.{sys.version_info.minor}"
        ):  # wheels for that Python only
            argv += ["--only-binary=:all:", "--python-version", image_python, "--implementation", "cp"]
        proc = subprocess.run(argv, capture_output=True, text=True, cwd="/")
        if proc.returncode != 0:
            raise SandboxError(f"proxy image: pip install failed:\n{proc.stderr[-2000:]}")
        container = client.containers.create(
            base.id, entrypoint=["/bin/true"], network_mode="none", user="0:0"
        )
        try:
            container.put_archive("/", _package_tar(site, image_python))
            repository, _, version_tag = tag.partition(":")
            container.commit(
                repository=repository,
                tag=version_tag or "latest",
                changes=[
                    "USER 10001",
                    "WORKDIR /",
                    'ENTRYPOINT ["python3", "-I", "-m", "jupyter_openshell"]',
                    'CMD ["proxy", "--help"]',
                    f"LABEL {LABEL}={content}",
                ],
            )
        finally:
            container.remove(force=True)
    log(f"built {tag}")
    return tag
