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
