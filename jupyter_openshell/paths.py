"""Where jupyter-openshell keeps its per-user state on the host.

Layout under the state directory (mode 0700, never mounted into a sandbox):
  ca/            mitmproxy confdir: CA key (0600) and exported CA bundle
  secrets/       named secrets, one 0600 file each (file name = secret name)
  policies/      policy sources and their history
  sandboxes/     one directory per sandbox (metadata, sockets, workspace default)
  flows/         append-only JSON-lines flow logs
  run/           pid files and sockets of long-running services (proxy, gateway)

It must never create anything world-readable, and never return a path inside a sandbox's view.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

STATE_ENV = "OPENSHELL_STATE_DIR"


def state_dir() -> Path:
    """The per-user state directory, created 0700 on first use.

    $OPENSHELL_STATE_DIR wins; else $XDG_STATE_HOME/openshell; else ~/.local/state/openshell.
    """
    env = os.environ.get(STATE_ENV)
    if env:
        base = Path(env)
    else:
        xdg = os.environ.get("XDG_STATE_HOME")
        base = Path(xdg) / "openshell" if xdg else Path.home() / ".local" / "state" / "openshell"
    return ensure_private_dir(base)


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) and force mode 0700 on it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def sub(name: str) -> Path:
    """A private subdirectory of the state directory (ca, secrets, policies, sandboxes, flows, run)."""
    return ensure_private_dir(state_dir() / name)


def write_private(path: Path, data: str | bytes) -> None:
    """Replace `path` atomically with `data`, mode 0600, synced (readers see old or new, never half)."""
    import tempfile  # (here: the CLI's exec path reads state without loading it)

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # mkstemp created it 0600
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
