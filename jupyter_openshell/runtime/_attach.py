"""Exec into an existing local sandbox with nothing but its record and its agent's control socket.

The hot path of `openshell sandbox exec` (agents call it in loops): it must never import the machinery
of `create` (bubblewrap, seccomp, cgroups, the policy parser, the proxy client), and never run a command
anywhere but through the sandbox's agent.
"""

from __future__ import annotations

from . import _state
from ._errors import SandboxError, check_name
from ._exec import RemoteProcess

TYPE_CHECKING = False  # (not typing.TYPE_CHECKING: `openshell sandbox exec` does not import typing)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any


def record(name: str) -> dict:
    """The sandbox record of `name`; SandboxError if there is none."""
    found = _state.read(check_name(name))
    if found is None:
        raise SandboxError(f"no sandbox named {name}; `openshell sandbox ls` lists them")
    return found


def exec_local(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
) -> RemoteProcess:
    found = record(name)
    if not argv:
        raise SandboxError("exec needs a command, e.g. `openshell sandbox exec NAME -- python -V`")
    return RemoteProcess(
        found["control"], argv, env=env, cwd=cwd, stdin=stdin, stdout=stdout, stderr=stderr, sandbox=name
    )
