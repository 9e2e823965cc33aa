"""The agent survives what its own sandbox does to it, as root and as an unprivileged user: 1,000
half-open connections through its proxy relay (capped at 256, the rest answered 503
`X-OpenShell-Error: relay-busy`, one thread whatever the load), a fork bomb at pids.max (exec answers
at once that the sandbox is full, the relay keeps relaying), and afterwards a normal request and a
`sandbox exec` work. The control raises the cap: the same flood then holds every connection open,
which the fd count sees.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from jupyter_openshell.runtime import _state
from jupyter_openshell.runtime._resources import _descendants
from jupyter_openshell.testing import UpstreamServer

ALLOW = """\
network:
  egress:
    - host: "127.0.0.1"
      ports: [{port}]
      paths:
        - path: "/ok/**"
          methods: ["GET"]
      action: allow
    - action: deny
resources:
  pids: 48
"""

FLOOD = """
import http.client, socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
socks = [socket.create_connection(("127.0.0.1", 3128), timeout=10) for _ in range(count)]
time.sleep(5)  # (all idle: refused ones have had their answer, idle ones gave their slot away)
open_ = busy = closed = 0
for s in socks:
    s.setblocking(False)
    try:
        data = s.recv(4096)
    except BlockingIOError:
        open_ += 1  # (relayed, or waiting in the listen backlog)
        continue
    except ConnectionResetError:
        data = b""
    busy += data.startswith(b"HTTP/1.1 503") and b"X-OpenShell-Error: relay-busy" in data
    closed += not data
print("holding", open_, busy, closed, flush=True)
sys.stdin.readline()  # (the host looks at the agent meanwhile)
conn = http.client.HTTPConnection("127.0.0.1", 3128, timeout=10)
conn.request("GET", f"http://127.0.0.1:{port}/ok/after-flood")
print("normal", conn.getresponse().status, flush=True)
"""

BOMB = """
import http.client, os, sys, time
port = int(sys.argv[1])
children = 0
try:
    while children < 100000:
        if os.fork() == 0:
            os.close(1); os.close(2)
            time.sleep(10)
            os._exit(0)
        children += 1
except OSError:
    pass
conn = http.client.HTTPConnection("127.0.0.1", 3128, timeout=10)
conn.request("GET", f"http://127.0.0.1:{port}/ok/during-bomb")
print("bomb", children, conn.getresponse().status, flush=True)
sys.stdin.readline()
"""


def agent_pid(record: dict) -> int:
    """The host pid of the sandbox's agent, found in the process tree of its shim (local) or of its
    container's init (docker). Locally: the Python whose boot code names `_agent` (the shim's and
    bwrap's command lines hold that code too). In a container the agent is init's fork, with init's
    command line: the child the record names, as long as it is still that process below that init."""
    tree = _descendants(record["pid"])
    recorded = record.get("agent_pid")
    if recorded:
        assert recorded in tree and _state.alive(recorded, record.get("agent_start")), (recorded, tree)
        return recorded
    for pid in tree:
        try:
            if (
                Path(f"/proc/{pid}/comm").read_text().startswith("python")
                and b"_agent" in Path(f"/proc/{pid}/cmdline").read_bytes()
            ):
                return pid
        except OSError:
            continue
    raise AssertionError(f"no agent below pid {record['pid']}")


def _agent(mode, name: str) -> int:
    return agent_pid(mode.record(name))


def _tasks_and_fds(pid: int) -> tuple[int, int]:
    return len(list(Path(f"/proc/{pid}/task").iterdir())), len(list(Path(f"/proc/{pid}/fd").iterdir()))


def _start(mode, name: str, code: str, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        mode.argv("exec", name, "--", "python3", "-c", code, *args),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=mode.env(),
        cwd="/",
    )
    return proc


def _flood(mode, name: str, port: int) -> tuple[list[int], tuple[int, int], str]:
    agent = _agent(mode, name)
    proc = _start(mode, name, FLOOD, str(port), "1000")
    line = proc.stdout.readline()
    assert line.startswith("holding"), (line, proc.stderr.read() if proc.poll() is not None else "")
    seen = _tasks_and_fds(agent)
    assert mode.sh(name, "echo alive").stdout.strip() == "alive"  # exec while the flood holds
    out, err = proc.communicate("go\n", timeout=60)
    assert _agent(mode, name) == agent  # (the same agent: it never died)
    return [int(x) for x in line.split()[1:]], seen, out + err


def test_a_thousand_half_open_connections_leave_the_relay_and_exec_working(mode):
    with UpstreamServer() as upstream:
        name = mode.create(ALLOW.format(port=upstream.port))
        (open_, busy, closed), (tasks, fds), out = _flood(mode, name, upstream.port)
        assert tasks == 1  # one thread, no task per connection (pids.max is 48 here)
        # at most 256 relayed (a client and a gateway socket each, plus the refused ones being
        # answered); the rest were answered 503 relay-busy (while the gateway's backlog was full) or
        # closed to make room (silent ones first), or wait in the backlog: which of the two happens
        # depends on how fast the proxy accepts, what matters is that the cap turned some away
        assert fds < 4 * 256, fds
        assert busy + closed > 0 and open_ + busy + closed == 1000, (open_, busy, closed)
        assert "normal 200" in out, out
        assert "/ok/after-flood" in [r.path for r in upstream.requests]
        mode.rm(name)


def test_control_an_uncapped_relay_holds_every_connection(mode):
    """The control: with the cap raised above the flood, the same fd count sees all 1,000 held."""
    with UpstreamServer() as upstream:
        name = mode.create(ALLOW.format(port=upstream.port), env={"OPENSHELL_RELAY_MAX_CONNECTIONS": "3000"})
        (open_, busy, closed), (_tasks, fds), out = _flood(mode, name, upstream.port)
        assert (open_, busy, closed) == (1000, 0, 0) and fds > 1500, (open_, busy, closed, fds)
        assert "normal 200" in out, out
        mode.rm(name)


def test_agent_serves_exec_and_relay_through_a_fork_bomb(mode):
    with UpstreamServer() as upstream:
        name = mode.create(ALLOW.format(port=upstream.port))
        agent = _agent(mode, name)
        bomb = _start(mode, name, BOMB, str(upstream.port))
        line = bomb.stdout.readline()
        assert line.startswith("bomb"), (line, bomb.stderr.read() if bomb.poll() is not None else "")
        _word, children, status = line.split()
        assert int(children) < 48 and status == "200"  # the relay relayed with every pid taken
        start = time.monotonic()
        full = mode.sh(name, "echo alive")  # no pid left for it: refused at once, not hung
        assert full.returncode == 126 and "process limit" in full.stderr, (full.returncode, full.stderr)
        assert time.monotonic() - start < 10
        bomb.communicate("go\n", timeout=60)
        deadline = time.monotonic() + 30  # (the bomb's children sleep 10 s)
        while mode.sh(name, "echo alive").stdout.strip() != "alive":
            assert time.monotonic() < deadline, "exec never recovered after the fork bomb"
            time.sleep(1)
        assert _agent(mode, name) == agent
        mode.rm(name)
