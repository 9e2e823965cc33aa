"""How the local agent starts: `python -I -S -B -c AGENT_BOOT <fd>`, where the fd is a memfd holding its
config and the compiled code of its modules (`_landlock`, `_wire`, `_agent`, compiled once per process by
the host), so that nothing is compiled or read from a path inside the sandbox. It must never hand the agent
code the host did not compile from this package.
"""

from __future__ import annotations

import importlib.machinery
import marshal
import os
from functools import cache
from typing import Any

# The agent's first code: load the config and the agent's pre-compiled modules from the fd in argv[1].
AGENT_BOOT = """import marshal, os, sys
fd = int(sys.argv[1])
config, modules = marshal.loads(os.pread(fd, os.fstat(fd).st_size, 0))
os.close(fd)
for name, path, code in modules:
    sys.modules[name] = module = type(sys)(name)
    module.__file__ = path
    exec(code, module.__dict__)
sys.modules["_agent"].main(config)
"""
AGENT_MODULES = ("_landlock", "_wire", "_agent")


@cache
def agent_code() -> tuple[tuple[str, str, Any], ...]:
    """(name, path, code) of the agent's modules, compiled once per process (from __pycache__ when
    it is fresh), so that no sandbox compiles them at start-up."""
    here = os.path.dirname(os.path.realpath(__file__))
    out = []
    for name in AGENT_MODULES:
        path = os.path.join(here, f"{name}.py")
        out.append((name, path, importlib.machinery.SourceFileLoader(name, path).get_code(name)))
    return tuple(out)


def agent_fd(config: dict) -> int:
    fd = os.memfd_create("openshell-agent", os.MFD_CLOEXEC)
    os.write(fd, marshal.dumps((config, agent_code())))
    return fd
