"""What a local sandbox needs of the host before bubblewrap runs: its tools (`which`), the Python and
package the agent runs on, bound read-only (`runtime_paths`), and that the sandbox's uid can reach every
path it binds (`check_reachable`). It must never bind a path the sandbox's uid could not reach by itself
(bwrap resolves binds with that uid's rights).
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

import jupyter_openshell

from . import _bwrap
from ._agent_env import inside
from ._types import SandboxError


def which(tool: str, package: str) -> str:
    found = shutil.which(tool, path="/usr/bin:/bin:/usr/sbin:/sbin:/usr/local/bin")
    if not found:
        raise SandboxError(f"{tool} is not installed: run scripts/setup.sh (or apt-get install {package})")
    return found


def runtime_paths() -> tuple[str, list[str]]:
    """(python, paths to bind read-only) for the agent's Python and our package."""
    python = sys.executable
    package = os.path.realpath(os.path.dirname(jupyter_openshell.__file__))
    binds = []
    for path in (sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(python)), package):
        real = os.path.realpath(path)
        if not any(inside(real, d) for d in (*_bwrap.SYSTEM_DIRS, *binds)):
            binds.append(real)
    if (
        python.startswith(sys.prefix.rstrip("/") + "/")
        and sys.prefix not in binds
        and not any(inside(sys.prefix, d) for d in (*_bwrap.SYSTEM_DIRS, *binds))
    ):
        binds.append(sys.prefix)
    return python, binds


def check_reachable(paths_: list[str], owner: int, python: bool) -> None:
    """bwrap, running as `owner` (with gid `owner`, no other groups), must traverse every parent (and
    read a file leaf): as the group where the entry's group is that gid, else as 'other'."""
    for path in paths_:
        current = "/"
        for part in Path(path).parts[1:]:
            current = os.path.join(current, part)
            st = os.stat(current)
            if st.st_uid == owner:
                continue
            need = stat.S_IXOTH if stat.S_ISDIR(st.st_mode) else stat.S_IROTH
            if st.st_gid == owner:
                need <<= 3  # the group's bits
            if st.st_mode & need == need:
                continue
            where = f"{current} is mode {stat.S_IMODE(st.st_mode):04o}"
            if python:
                raise SandboxError(
                    f"the sandbox's Python or package at {path} is not readable by the sandbox's uid "
                    f"{owner}: {where}. A Python under a 0700 home (such as /root/.pyenv) cannot run inside "
                    "a sandbox; build the venv on /usr/bin/python3 (scripts/setup.sh does)"
                )
            raise SandboxError(
                f"{path} is not reachable by the sandbox's uid {owner}: {where}. Use a "
                "workspace outside private (0700) directories, or make its parents o+x"
            )
