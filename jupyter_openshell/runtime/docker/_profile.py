"""The Docker seccomp profile of a sandbox, generated from the local backend's rule list.

`profile()` turns `runtime._seccomp.rules()` (the one list both backends use) into Docker's JSON format:
allow by default, each rule an `SCMP_ACT_ERRNO` with its errno and argument conditions, and only the
native architecture listed (other architectures and x32 calls hit libseccomp's bad-arch action, which
kills). `rules_of(profile)` reads a profile back into rules, so tests can compile it with libseccomp and
compare it with the local filter. It must never list a call here that is not in that one list.
"""

from __future__ import annotations

import json
import platform
from functools import cache

from .. import _seccomp

ARCHES = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}


def native_arch() -> str:
    machine = platform.machine()
    if machine not in ARCHES:
        raise RuntimeError(f"no seccomp profile for architecture {machine}")
    return ARCHES[machine]


def profile() -> dict:
    syscalls = []
    for rule in _seccomp.rules():
        entry: dict = {"names": [rule.syscall], "action": "SCMP_ACT_ERRNO", "errnoRet": rule.errno}
        if rule.args:
            entry["args"] = [
                {"index": index, "value": a, "valueTwo": b, "op": f"SCMP_CMP_{op}"}
                for index, op, a, b in rule.args
            ]
        syscalls.append(entry)
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": [native_arch()], "syscalls": syscalls}


@cache
def profile_json() -> str:
    """The profile as the engine takes it (`security_opt: seccomp=<json>`)."""
    return json.dumps(profile(), separators=(",", ":"))


def rules_of(data: dict) -> tuple[_seccomp.Rule, ...]:
    """The rules a profile expresses (one per name), in its order."""
    out = []
    for entry in data["syscalls"]:
        if entry["action"] != "SCMP_ACT_ERRNO":
            raise ValueError(f"unexpected action {entry['action']}")
        args = tuple(
            (a["index"], a["op"].removeprefix("SCMP_CMP_"), a["value"], a.get("valueTwo", 0))
            for a in entry.get("args", ())
        )
        out += [_seccomp.Rule(name, entry["errnoRet"], args) for name in entry["names"]]
    return tuple(out)
