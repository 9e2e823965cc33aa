"""PID 1 of a Docker sandbox: starts the agent, reaps orphans, ends the sandbox (runs INSIDE the container).

Run by the image's python3 as `python3 -I -S -B /opt/openshell/agent/_init.py CONFIG_JSON`, next to
copies of the agent's modules (`_agent`, `_wire`, `_landlock`). It forks the agent (PID 2, the same
agent as the local backend's), then waits for every child: orphaned processes are reparented here and
reaped. When the agent exits, or `lifetime` seconds (the policy's `resources.timeout`) have passed,
it exits, and the kernel kills every process left in the container's PID namespace. No signal
handler is installed, so nothing inside the sandbox can signal it. Stdlib only; it must never run a
command itself.
"""

import _thread
import json
import os
import sys
import time


def _expire(seconds: float) -> None:
    time.sleep(seconds)
    os.write(2, f"openshell init: the sandbox's lifetime ({seconds:g} s) is over: ending it\n".encode())
    os._exit(137)


def main() -> None:
    config = json.loads(sys.argv[1])
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    agent = os.fork()
    if agent == 0:
        import _agent

        _agent.main(config)
        os._exit(0)
    if config.get("lifetime"):
        _thread.start_new_thread(_expire, (float(config["lifetime"]),))
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(1)
        if pid == agent:
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
