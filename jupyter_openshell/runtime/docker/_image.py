"""The project's default sandbox image, `jupyter-openshell/sandbox:<version>`, built on this machine.

`build()` needs no container registry: a Debian root filesystem made with `debootstrap` (minbase, no
recommends, from Debian's mirror) or exported from a `base` image already on the engine, plus the pip
packages the OpenShell kernel needs, installed by the host's pip (its configuration, indexes and
constraints included) into the root filesystem for its Python version, then `docker import`. The image
carries a content hash of everything that went in: an image with the same hash is not built again. The
debootstrap result is kept as a tarball under `cache_dir()`, so a second build on the same machine (or
in the same CI run) skips it. Every stage prints one line with its time. It must never run anything
of the image on the host, and never push anything anywhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jupyter_openshell

from .._types import SandboxError
from . import _engine

REPO = "jupyter-openshell/sandbox"
LABEL_CONTENT = f"{_engine.LABEL}.content"
SUITE = "bookworm"
MIRROR = os.environ.get("OPENSHELL_DEBIAN_MIRROR", "http://deb.debian.org/debian")
DEB_PACKAGES = ("python3", "ca-certificates", "curl")
# What the OpenShell kernel and its magics import inside (the kernel's own bounds, from pyproject.toml).
PIP_PACKAGES = (
    "ipykernel>=6.29,<8",
    "ipywidgets>=8.1,<9",
    "pyyaml>=6",
    "ruamel.yaml>=0.17",
    "nh3>=0.3.8,<0.4",
    "mistune>=3.0,<4",
)
# Removed from the root filesystem: package caches, documentation, translations, logs.
STRIP = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "var/log",
)
SANDBOX_USER = "sandbox:x:1000:1000:openshell sandbox:/tmp/home:/bin/sh\n"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUILDER_VERSION = 2  # bump when what `build` does changes
# Nobody logs in: no password databases; no home directories but the sandbox's own (/tmp/home).
REMOVED = ("etc/shadow", "etc/shadow-", "etc/gshadow", "etc/gshadow-", "home", "root")


def default_image() -> str:
    return f"{REPO}:{jupyter_openshell.__version__}"


def cache_dir() -> Path:
    base = os.environ.get("OPENSHELL_IMAGE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "jupyter-openshell"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def content_hash(base: str | None) -> str:
    what = {
        "builder": BUILDER_VERSION,
        "rootfs": base or {"suite": SUITE, "mirror": MIRROR, "packages": DEB_PACKAGES, "strip": STRIP},
        "pip": PIP_PACKAGES,
        "user": SANDBOX_USER,
        "removed": REMOVED,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


@contextlib.contextmanager
def _stage(log: Callable[[str], None], what: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    log(f"  {what}: {time.monotonic() - started:.1f} s")


def _run(argv: list[str], what: str, **kwargs: object) -> None:
    """Run a build step quietly; on failure, its output's tail in the error."""
    proc = subprocess.run(argv, capture_output=True, text=True, cwd="/", **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
        raise SandboxError(f"image build: {what} failed (exit {proc.returncode}):\n{tail}")


def build(
    tag: str | None = None,
    *,
    rebuild: bool = False,
    base: str | None = None,
    log: Callable[[str], None] = print,
) -> str:
    """Build the default image (or `tag`) unless an image with the same content is there; returns the tag."""
    tag = tag or default_image()
    client = _engine.client()
    content = content_hash(base)
    with contextlib.suppress(_engine.errors().ImageNotFound):
        found = client.images.get(tag)
        if not rebuild and (found.labels or {}).get(LABEL_CONTENT) == content:
            log(f"{tag} is up to date (content {content[:12]}); --rebuild builds it again")
            return tag
    started = time.monotonic()
    log(f"building {tag} (content {content[:12]})")
    with tempfile.TemporaryDirectory(prefix="build-", dir=cache_dir()) as tmp:
        rootfs = Path(tmp, "rootfs")
        rootfs.mkdir()
        if base:
            with _stage(log, f"root filesystem exported from {base}"):
                _export(client, base, rootfs)
        else:
            _debian(rootfs, log)
        version = _python_version(rootfs)
        with _stage(log, f"pip packages for Python {version} ({', '.join(PIP_PACKAGES)})"):
            _pip(rootfs, version)
        with _stage(log, "sandbox user and mount points"):
            _files(rootfs)
        with _stage(log, "docker import"):
            _import(client, rootfs, tag, content)
    size = client.images.get(tag).attrs.get("Size", 0)
    log(f"built {tag}: {size / 1e6:.0f} MB in {time.monotonic() - started:.1f} s")
    return tag


def _debian(rootfs: Path, log: Callable[[str], None]) -> None:
    """Debian minbase + DEB_PACKAGES, stripped; from the cached tarball when there is one."""
    key = hashlib.sha256(json.dumps([SUITE, MIRROR, DEB_PACKAGES, STRIP]).encode()).hexdigest()[:16]
    tarball = cache_dir() / f"debootstrap-{SUITE}-{key}.tar"
    if tarball.exists():
        with _stage(log, f"root filesystem from the cached {tarball}"):
            _run(["tar", "-C", str(rootfs), "--numeric-owner", "-xpf", str(tarball)], "unpacking the cache")
        return
    debootstrap = shutil.which("debootstrap", path="/usr/sbin:/usr/bin:/sbin:/bin")
    if debootstrap is None:
        raise SandboxError(
            "image build needs debootstrap: apt-get install debootstrap (scripts/setup.sh --test)"
        )
    if os.geteuid() != 0:
        raise SandboxError("image build with debootstrap needs root (it makes a Debian root filesystem)")
    with _stage(log, f"debootstrap {SUITE} minbase + {', '.join(DEB_PACKAGES)} from {MIRROR}"):
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "DEBIAN_FRONTEND": "noninteractive",
        }
        _run(
            [
                debootstrap,
                "--variant=minbase",
                f"--include={','.join(DEB_PACKAGES)}",
                SUITE,
                str(rootfs),
                MIRROR,
            ],
            "debootstrap",
            env=env,
        )
        for path in STRIP:
            target = rootfs / path
            if target.is_dir():
                for child in target.iterdir():
                    _remove(child)
    with _stage(log, f"cached as {tarball}"):
        partial = tarball.with_suffix(".partial")
        _run(
            ["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."],
            "caching the root filesystem",
        )
        partial.replace(tarball)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _export(client: object, base: str, rootfs: Path) -> None:
    errors = _engine.errors()
    try:
        container = client.containers.create(base, entrypoint=["/bin/true"], network_mode="none")  # type: ignore[attr-defined]
    except errors.ImageNotFound:
        try:
            client.images.pull(base)  # type: ignore[attr-defined]
        except errors.APIError as exc:
            raise SandboxError(f"base image {base} is not here and cannot be pulled: {exc}") from None
        container = client.containers.create(base, entrypoint=["/bin/true"], network_mode="none")  # type: ignore[attr-defined]
    try:
        tar = subprocess.Popen(
            ["tar", "-C", str(rootfs), "--numeric-owner", "-xpf", "-"], stdin=subprocess.PIPE
        )
        assert tar.stdin is not None
        for chunk in container.export():
            tar.stdin.write(chunk)
        tar.stdin.close()
        if tar.wait() != 0:
            raise SandboxError(f"image build: unpacking {base} failed")
    finally:
        container.remove(force=True)


def _python_version(rootfs: Path) -> str:
    for candidate in ("usr/local/bin/python3", "usr/bin/python3"):
        path = rootfs / candidate
        if path.is_symlink() or path.exists():
            name = os.readlink(path) if path.is_symlink() else path.name
            version = Path(name).name.removeprefix("python")
            if version.count(".") == 1:
                return version
            for lib in sorted((rootfs / candidate).parent.parent.glob("lib/python3.*")):
                return lib.name.removeprefix("python")
    raise SandboxError("image build: the root filesystem has no python3")


def _site_dir(rootfs: Path, version: str) -> Path:
    """Where the rootfs's Python finds packages: Debian's dist-packages, or an upstream build's
    site-packages."""
    if (rootfs / "usr/local/bin/python3").exists() or (rootfs / "usr/local/bin/python3").is_symlink():
        return rootfs / f"usr/local/lib/python{version}/site-packages"
    return rootfs / f"usr/local/lib/python{version}/dist-packages"


def _pip(rootfs: Path, version: str) -> None:
    target = _site_dir(rootfs, version)
    target.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-I",
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-warn-script-location",
        "--target",
        str(target),
        *PIP_PACKAGES,
    ]
    if version != f"{sys.version_info.major}.{sys.version_info.minor}":
        # another Python: wheels for that version only (no build on the host), no host byte code
        argv += ["--python-version", version, "--implementation", "cp", "--only-binary=:all:", "--no-compile"]
    _run(argv, "pip install (the host's pip, with its configuration)")
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(target / "bin")  # console scripts whose #! names the host's Python


def _files(rootfs: Path) -> None:
    passwd = rootfs / "etc/passwd"
    if ":1000:" not in passwd.read_text():
        with open(passwd, "a") as fh:
            fh.write(SANDBOX_USER)
        with open(rootfs / "etc/group", "a") as fh:
            fh.write("sandbox:x:1000:\n")
    for path in REMOVED:
        with contextlib.suppress(FileNotFoundError):
            _remove(rootfs / path)
    for path in ("workspace", "etc/openshell", "run/openshell", "run/openshell-agent"):
        (rootfs / path).mkdir(parents=True, exist_ok=True)


def _import(client: object, rootfs: Path, tag: str, content: str) -> None:
    repository, _, version = tag.partition(":")
    changes = [
        f"ENV PATH={SYSTEM_PATH}",
        "ENV LANG=C.UTF-8",
        f"LABEL {LABEL_CONTENT}={content}",
        "WORKDIR /workspace",
        "USER 1000",
        'CMD ["/bin/sh"]',
    ]
    tar = subprocess.Popen(
        ["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE, cwd="/"
    )
    try:
        out = client.api.import_image_from_stream(  # type: ignore[attr-defined]
            tar.stdout, repository=repository, tag=version or "latest", changes=changes
        )
    finally:
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait()
    if tar.returncode != 0 or "error" in str(out).lower():
        raise SandboxError(f"image build: docker import failed: {str(out)[-2000:]}")
