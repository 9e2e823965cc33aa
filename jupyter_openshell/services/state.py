"""The parts of the state directory the Jupyter-side layers keep their own records in: the kernel homes of
a kernel host (`<state>/kernels/<token>/`: relay sockets, markers, log) and the server extension's records
(`<state>/jupyter/`: owners of REST-created sandboxes), and the state directory's identity.

It must never hand out a directory another user could write, nor one a sandbox can see.
"""

from __future__ import annotations

import os
from pathlib import Path


def kernel_homes() -> Path:
    """The kernel homes of this state directory (private, made on first use)."""
    from ..paths import ensure_private_dir, layout

    return ensure_private_dir(layout().kernels_dir)


def owner_records() -> Path:
    """The server extension's record of who owns which REST-created sandbox (its directory private, made on
    first use)."""
    from ..paths import ensure_private_dir, layout

    ensure_private_dir(layout().jupyter_dir)
    return layout().owners_file


def state_id() -> str:
    """This state directory's real path: what a kernel home records as its owner."""
    from ..paths import state_dir

    return os.path.realpath(state_dir())
