"""Where the Jupyter-side layers keep their own records: the kernel homes of a kernel host (relay sockets,
markers, log), the server extension's records (`<state>/jupyter/`: owners of REST-created sandboxes), and
the state directory's identity.

It must never hand out a directory another user could write, nor one a sandbox can see.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_HOMES = "openshell-kernels"  # (as root, in the system's temporary directory)


def kernel_homes() -> Path:
    """The kernel homes (made on first use). Not as root: `<state>/kernels` (private). As root, where state
    directories may be deep, a root-owned 0711 directory of the system's temporary directory whose entries
    (each 0700) have unguessable names: ipc socket paths (the relay's, the broker's) must stay below 108
    bytes. Every home records its state directory (`state_id`)."""
    from ..paths import ensure_private_dir, layout, shared_root_dir

    if os.geteuid() != 0:
        return ensure_private_dir(layout().kernels_dir)
    return shared_root_dir(SHARED_HOMES)


def owner_records() -> Path:
    """The server extension's record of who owns which REST-created sandbox (its directory private, made on
    first use)."""
    from ..paths import ensure_private_dir, layout

    ensure_private_dir(layout().jupyter_dir)
    return layout().owners_file


def owner_mark() -> str:
    """"PID START" of this process: what a kernel home records as the host process it belongs to."""
    from ..runtime import process_start

    return f"{os.getpid()} {process_start(os.getpid())}"


def owner_alive(mark: str) -> bool:
    """True while the process an `owner_mark()` names lives (pid and start time match); ValueError for a
    malformed mark."""
    from ..runtime import process_alive

    pid, started = mark.split()
    return process_alive(int(pid), int(started))


def state_id() -> str:
    """This state directory's real path: what a kernel home records as its owner."""
    from ..paths import state_dir

    return os.path.realpath(state_dir())
