"""The sandbox sections of a policy: `filesystem` (paths bound read-only, read-write or hidden, workspace
entries protected or writable), `process` (the user inside, never root) and `resources` (cpu, memory, pids,
disk, timeout, with units).

A mixin of the validator (`_parse._Validator`). It must never accept root as the sandbox's user, nor a
relative path where an absolute one is bound.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from ._keys import FS_KEYS, FS_NAME_KEYS, PROCESS_KEYS, RESOURCE_KEYS
from ._model import Filesystem, Process, Resources
from ._validator import SIZE, SIZE_UNITS, Loc, Validator, is_int, is_num, type_name, val_loc

_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}\Z")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)?\Z")
_DURATION_UNITS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class SandboxParser(Validator):
    # static sections

    def filesystem(self, node: Any, loc: Loc) -> Filesystem:
        ex = (
            'filesystem:\n  read_only: ["/usr", "/etc"]\n  read_write: ["/workspace"]\n'
            + '  hidden: ["/etc/shadow"]'
        )
        if not self.mapping(node, "filesystem", loc, FS_KEYS + FS_NAME_KEYS, ex):
            return Filesystem()
        lists: dict[str, tuple[str, ...]] = {}
        for key in FS_KEYS:
            if key not in node or node[key] is None:
                lists[key] = ()
                continue
            kloc = val_loc(node, key, loc)
            items = node[key]
            if not self.seq(items, f"filesystem.{key}", kloc, "absolute paths", f'{key}: ["/data"]'):
                lists[key] = ()
                continue
            got = []
            for i, p in enumerate(items):
                pfield, ploc = f"filesystem.{key}[{i}]", val_loc(items, i, kloc)
                text = self.string(p, pfield, ploc, "an absolute path", f'{key}: ["/data"]')
                if text is None:
                    continue
                if not text.startswith("/") or "\0" in text or ".." in text.split("/"):
                    self.error(
                        ploc,
                        pfield,
                        f"{text!r} is not an absolute path without '..'",
                        "an absolute path",
                        f'{key}: ["/data"]',
                    )
                    continue
                got.append(posixpath.normpath(text).replace("//", "/"))
            lists[key] = tuple(dict.fromkeys(got))
        for p in set(lists["read_only"]) & set(lists["read_write"]):
            self.warn(
                loc,
                "filesystem",
                f"{p!r} is both read_only and read_write (read_write wins)",
                "each path in one list",
                ex,
            )
        for key in FS_NAME_KEYS:
            lists[key] = self.workspace_names(node.get(key), key, val_loc(node, key, loc))
        return Filesystem(**lists)

    def workspace_names(self, items: Any, key: str, kloc: Loc) -> tuple[str, ...]:
        """Entries of the workspace named relative to it (`.git`, `tools/Makefile`): no globs."""
        example = f'{key}: [".git", "Makefile"]'
        if items is None:
            return ()
        if not self.seq(items, f"filesystem.{key}", kloc, "paths relative to the workspace", example):
            return ()
        got = []
        for i, p in enumerate(items):
            pfield, ploc = f"filesystem.{key}[{i}]", val_loc(items, i, kloc)
            text = self.string(p, pfield, ploc, "a path relative to the workspace", example)
            if text is None:
                continue
            parts = text.split("/")
            if (
                text.startswith("/")
                or "\0" in text
                or any(x in ("", ".", "..") for x in parts)
                or any(c in text for c in "*?[")
            ):
                self.error(
                    ploc,
                    pfield,
                    f"{text!r} is not a path relative to the workspace (no leading '/', '.', '..', empty "
                    "parts or glob characters)",
                    "a path relative to the workspace",
                    example,
                )
                continue
            got.append(text)
        return tuple(dict.fromkeys(got))

    def process(self, node: Any, loc: Loc) -> Process:
        if not self.mapping(node, "process", loc, PROCESS_KEYS, 'process:\n  user: "sandbox"'):
            return Process()
        if "user" not in node:
            return Process()
        u = node["user"]
        uloc = val_loc(node, "user", loc)
        if is_int(u) and 0 <= u < 2**32 - 1:
            value: str | int = int(u)
        elif isinstance(u, str) and _USER.match(u):
            value = str(u)
        else:
            self.error(
                uloc,
                "process.user",
                f"{type_name(u)} is not a user name or uid",
                "a user name (lower-case) or a numeric uid",
                'user: "sandbox"',
            )
            return Process()
        if value in (0, "root"):
            self.warn(
                uloc,
                "process.user",
                "code runs as root inside the sandbox",
                "an unprivileged user",
                'user: "sandbox"',
            )
        return Process(user=value)

    def resources(self, node: Any, loc: Loc) -> Resources:
        ex = 'resources:\n  cpu: 2\n  memory: "4Gi"\n  pids: 512\n  disk: "10Gi"\n  timeout: 3600'
        if not self.mapping(node, "resources", loc, RESOURCE_KEYS, ex):
            return Resources()
        d = Resources()
        values: dict[str, Any] = {}
        if node.get("cpu") is not None:
            values["cpu"] = self.cpu(node["cpu"], val_loc(node, "cpu", loc))
        for key in ("memory", "disk"):
            if node.get(key) is not None:
                values[key] = self.size(node[key], f"resources.{key}", val_loc(node, key, loc))
        if node.get("pids") is not None:
            p = node["pids"]
            if not is_int(p) or not 1 <= p <= 4194304:
                self.error(
                    val_loc(node, "pids", loc),
                    "resources.pids",
                    f"expected a process count, got {type_name(p)}",
                    "an integer 1-4194304",
                    "pids: 256",
                )
            else:
                values["pids"] = int(p)
        if "timeout" in node and node["timeout"] is not None:
            values["timeout"] = self.duration(node["timeout"], val_loc(node, "timeout", loc))
        values = {k: v for k, v in values.items() if v is not None}
        return Resources(**{**d.__dict__, **values})

    def cpu(self, v: Any, loc: Loc) -> float | None:
        out: float | None = None
        if is_num(v):
            out = float(v)
        elif isinstance(v, str):
            m = re.fullmatch(r"(\d+(?:\.\d+)?)(m?)", v.strip())
            if m:
                out = float(m.group(1)) / (1000 if m.group(2) else 1)
        if out is None or not 0 < out <= 1024:
            self.error(
                loc,
                "resources.cpu",
                f"expected a CPU count, got {type_name(v)}",
                'a number of CPUs > 0 (e.g. 0.5, 2, or "500m")',
                "cpu: 2",
            )
            return None
        return out

    def size(self, v: Any, field: str, loc: Loc) -> int | None:
        out: int | None = None
        if is_int(v):
            out = int(v)
        elif isinstance(v, str):
            m = SIZE.match(v.strip())
            if m:
                out = int(float(m.group(1)) * SIZE_UNITS[m.group(2)])
        if out is None or out < 1024**2:
            self.error(
                loc,
                field,
                f"expected a size of at least 1Mi, got {type_name(v)}",
                "bytes, or a number with a unit: K, M, G, T (x1000) or Ki, Mi, Gi, Ti (x1024)",
                f'{field.split(".")[-1]}: "2Gi"',
            )
            return None
        return out

    def duration(self, v: Any, loc: Loc) -> float | None:
        out: float | None = None
        if is_num(v):
            out = float(v)
        elif isinstance(v, str):
            m = _DURATION.match(v.strip())
            if m:
                out = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        if out is None or out <= 0:
            self.error(
                loc,
                "resources.timeout",
                f"expected a duration, got {type_name(v)}",
                "seconds > 0, or a number with s, m, h or d (null for no limit)",
                "timeout: 3600",
            )
            return None
        return out
