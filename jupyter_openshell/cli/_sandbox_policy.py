"""`openshell sandbox policy NAME [--set FILE|--history|--diff V|--rollback V]` and `openshell sandbox
allow NAME METHOD URL`: a sandbox's policy from the host (hot reload).

The host-side way to change what a sandbox may reach: code inside an OpenShell kernel cannot change its
own policy, so its denial notices point here. It must never write a policy that does not validate.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..runtime import SandboxError


def _versions(name: str, lookup: Callable[[], str]) -> str:
    """`lookup()` over the sandbox's policy history; an unknown version or name is a user error."""
    try:
        return lookup()
    except (LookupError, ValueError) as exc:
        hint = f"`openshell sandbox policy {name} --history` lists the versions"
        raise SandboxError(f"{exc.args[0]}; {hint}") from None


def _print_history(store: Any, name: str) -> None:
    current = store.get(name)
    entries = store.history(name)
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.ts_ms / 1000))
        mark = "  (current)" if current is not None and e.version == current.version else ""
        print(f"{when}  {e.version}{mark}")
    if not entries:
        print(f"sandbox {name}: no policy history")


def policy(backend: Any, args: argparse.Namespace) -> int:
    from ..policy import PolicyStore

    store = PolicyStore()
    if args.history:
        _print_history(store, args.name)
        return 0
    if args.diff:
        print(_versions(args.name, lambda: store.diff(args.name, args.diff)) or "(no difference)", end="")
        return 0
    if args.rollback:
        text = _versions(args.name, lambda: store.entry(args.name, args.rollback).text())
    elif args.set:
        try:
            text = Path(args.set).read_text()
        except OSError as exc:
            raise SandboxError(f"cannot read policy file {args.set}: {exc.strerror}") from None
    else:
        sys.stdout.write(backend.get_policy(args.name))
        return 0
    applied = backend.set_policy(args.name, text)
    print(
        f"sandbox {args.name}: policy version {getattr(applied, 'version', '?')} applied "
        "(network rules: next request; filesystem/process/resources/gpu: next create)"
    )
    for warning in getattr(applied, "warnings", ()):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def allow(backend: Any, name: str, method: str, url: str) -> int:
    from ..magics.ops import OpsError, PolicyOps

    backend.status(name)  # (no sandbox of that name: a user error)
    try:
        result = PolicyOps(name).allow(method.upper(), url)
    except OpsError as exc:
        raise SandboxError(str(exc)) from None
    state = "in force" if result.get("in_force") else "saved; the proxy applies it when it starts"
    print(f"sandbox {name}: allowed {method.upper()} {url}: policy version {result['version']} {state}")
    sys.stdout.write(result.get("diff") or "(no change: the policy already allowed it)\n")
    for warning in result.get("warnings") or ():
        print(f"warning: {warning}", file=sys.stderr)
    return 0
