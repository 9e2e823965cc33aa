"""`openshell sandbox exec`: run one command in a sandbox, forward signals, return its exit status.

The CLI's hot path: it imports only the runtime's exec path (`runtime.exec_in`). It must never hang on
a sandbox whose agent stopped answering.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from ..runtime import KILL_GRACE_S, exec_in

TYPE_CHECKING = False  # (not typing.TYPE_CHECKING: `openshell sandbox exec` does not import typing)
if TYPE_CHECKING:
    from ..runtime import ExecProcess

ENDING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def run(name: str, argv: list[str], cwd: str | None, env: dict[str, str]) -> int:
    proc = exec_in(name, argv, cwd=cwd, env=env)
    asked_to_end: list[float] = []

    def forward(sig: int, _frame: object) -> None:
        proc.send_signal(sig)
        if sig in ENDING and not asked_to_end:
            asked_to_end.append(time.monotonic())

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        code = _wait_or_give_up(proc, asked_to_end, name)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code


def _wait_or_give_up(proc: ExecProcess, asked_to_end: list[float], name: str) -> int:
    """Wait for the command. Once asked to end (SIGINT/SIGTERM/SIGHUP, forwarded), it gets KILL_GRACE_S,
    then SIGKILL and KILL_GRACE_S more; a sandbox that still does not answer (code inside can stop its
    own agent) is given up on, so this CLI never hangs."""
    killed_at = None
    while True:
        try:
            return proc.wait(0.5)
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if killed_at is None and asked_to_end and now - asked_to_end[0] > KILL_GRACE_S:
            proc.kill()
            killed_at = now
        elif killed_at is not None and now - killed_at > KILL_GRACE_S:
            proc.abandon()
            print(f"openshell sandbox: {name} does not end the command (its agent does not answer); "
                  f"`openshell sandbox rm {name}` ends everything in it", file=sys.stderr)
            return -signal.SIGKILL
