"""`openshell sandbox policy NAME [--set FILE|--history|--diff V|--rollback V]` and `openshell sandbox
allow NAME METHOD URL`: a sandbox's policy from the host (hot reload), through
`services.policies.PolicyService` (validated, through the sandbox's backend, then the proxy).

The host-side way to change what a sandbox may reach: code inside an OpenShell kernel cannot change its
own policy, so its denial notices point here. It must never write a policy that does not validate.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ..runtime import SandboxError


def _service(name: str) -> Any:
    from ..services import sandboxes
    from ..services.policies import PolicyService

    sandboxes.status(name)  # (no sandbox of that name: a user error)
    return PolicyService(name)


def _versions(name: str, lookup: Any) -> Any:
    """`lookup()` over the sandbox's policy history; an unknown version or name is a user error."""
    from ..services.errors import ServiceError

    try:
        return lookup()
    except ServiceError as exc:
        hint = f"`openshell sandbox policy {name} --history` lists the versions"
        raise SandboxError(f"{exc}; {hint}") from None


def _print_history(service: Any, name: str) -> None:
    entries = service.history()
    current = service.show()["version"] if entries else None
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["ts_ms"] / 1000))
        mark = "  (current)" if e["version"] == current else ""
        print(f"{when}  {e['version']}{mark}")
    if not entries:
        print(f"sandbox {name}: no policy history")


def _apply(service: Any, name: str, apply: Any) -> int:
    from ..services.errors import ServiceError

    try:
        result = apply()
    except ServiceError as exc:
        raise SandboxError(str(exc)) from None
    state = "in force" if result.get("in_force") else "saved; the proxy applies it when it starts"
    print(
        f"sandbox {name}: policy version {result['version']} applied ({state}; network rules: next request; "
        "filesystem/process/resources/gpu: next create)"
    )
    for warning in result.get("warnings") or ():
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def policy(args: argparse.Namespace) -> int:
    service = _service(args.name)
    if args.history:
        _print_history(service, args.name)
        return 0
    if args.diff:
        print(_versions(args.name, lambda: service.diff_from(args.diff)) or "(no difference)", end="")
        return 0
    if args.rollback:
        text = _versions(args.name, lambda: service.version_text(args.rollback))
    elif args.set:
        try:
            text = Path(args.set).read_text()
        except OSError as exc:
            raise SandboxError(f"cannot read policy file {args.set}: {exc.strerror}") from None
    else:
        sys.stdout.write(service.text())
        return 0
    source = args.set or f"version {args.rollback}"
    return _apply(service, args.name, lambda: service.put(text, source=source))


def allow(name: str, method: str, url: str) -> int:
    from ..services.errors import ServiceError

    service = _service(name)
    try:
        result = service.allow(method.upper(), url)
    except ServiceError as exc:
        raise SandboxError(str(exc)) from None
    state = "in force" if result.get("in_force") else "saved; the proxy applies it when it starts"
    print(f"sandbox {name}: allowed {method.upper()} {url}: policy version {result['version']} {state}")
    sys.stdout.write(result.get("diff") or "(no change: the policy already allowed it)\n")
    for warning in result.get("warnings") or ():
        print(f"warning: {warning}", file=sys.stderr)
    return 0
