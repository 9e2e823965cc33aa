"""`openshell sandbox ...`: create, exec into, list, inspect and remove sandboxes.

A thin layer over `jupyter_openshell.runtime`: parse arguments, call the backend, print. It must
never contain sandbox logic, and never print a policy's secrets (policies hold only secret names).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..policy import PolicyStore
from ..runtime import (
    KILL_GRACE_S,
    ExecProcess,
    SandboxError,
    SandboxSpec,
    available_backends,
    backend_of,
    backends_in_use,
    get_backend,
)

# Errors of bad input or state: `openshell` prints them as one message, no traceback.
USER_ERRORS = (SandboxError,)
ENDING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def _size(value: int | None) -> str:
    if not value:
        return "-"
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if value >= 1 << shift and value % (1 << shift) == 0:
            return f"{value >> shift}{unit}"
    return str(value)


def _create(args: argparse.Namespace) -> int:
    info = get_backend(args.backend).create(
        SandboxSpec(
            name=args.name,
            policy_file=args.policy,
            workspace=args.workspace,
            gpu=True if args.gpu else None,
            image=args.image,
        )
    )
    for warning in info.details.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
    else:
        print(info.name)
    return 0


def _exec(args: argparse.Namespace) -> int:
    argv = args.command[1:] if args.command[:1] == ["--"] else args.command
    proc = backend_of(args.name).exec(
        args.name, argv, cwd=args.cwd, env=dict(e.split("=", 1) for e in args.env or [])
    )
    asked_to_end: list[float] = []

    def forward(sig: int, _frame: object) -> None:
        proc.send_signal(sig)
        if sig in ENDING and not asked_to_end:
            asked_to_end.append(time.monotonic())

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        code = _wait_or_give_up(proc, asked_to_end, args.name)
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


def _cell(value: str, entry: dict) -> str:
    """A limit and what enforces it: "2G cgroup", "2G RLIMIT_AS", "1.0 NOT-ENFORCED", "512M tmpfs"."""
    by = entry.get("by", "")
    if not by:
        return value
    if by == "none":
        return f"{value} NOT-ENFORCED" if value != "-" else value
    return f"{value} {'cgroup' if by.startswith('cgroup') else by.replace(' + ', '+')}"


def _ls(args: argparse.Namespace) -> int:
    infos = []
    for backend in backends_in_use():  # every backend's sandboxes; one that cannot answer is reported
        try:
            infos += get_backend(backend).list()
        except SandboxError as exc:
            print(f"openshell sandbox ls: {backend} sandboxes not listed: {exc}", file=sys.stderr)
    if args.json:
        print(json.dumps([i.to_dict() for i in infos], indent=2))
        return 0
    rows = [
        (
            "NAME",
            "STATE",
            "BACKEND",
            "IMAGE",
            "ADDRESS",
            "ENFORCEMENT",
            "CPU",
            "MEMORY",
            "PIDS",
            "DISK",
            "AGE",
            "WORKSPACE",
        )
    ]
    notes: dict[str, None] = {}  # (ordered, without repeats)
    for i in infos:
        lim, res = i.limits, i.details.get("resources", {})
        notes.update({f"{name}: {e['note']}": None for name, e in res.items() if e.get("note")})
        rows.append(
            (
                i.name,
                i.state,
                i.backend,
                i.details.get("image") or "-",
                i.address or "-",
                i.enforcement or "-",
                _cell(str(lim.get("cpu") or "-"), res.get("cpu", {})),
                _cell(_size(lim.get("memory")), res.get("memory", {})),
                _cell(str(lim.get("pids") or "-"), res.get("pids", {})),
                _cell(
                    _size(res.get("disk", {}).get("limit") or i.details.get("tmp_size")), res.get("disk", {})
                ),
                f"{int(time.time() - i.created)}s",
                i.workspace,
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    for note in notes:
        print(f"  {note}")
    return 0


def _logs(args: argparse.Namespace) -> int:
    sys.stdout.write(backend_of(args.name).logs(args.name))
    return 0


def _versions(name: str, lookup: Callable[[], str]) -> str:
    """`lookup()` over the sandbox's policy history; an unknown version or name is a user error."""
    try:
        return lookup()
    except (LookupError, ValueError) as exc:
        hint = f"`openshell sandbox policy {name} --history` lists the versions"
        raise SandboxError(f"{exc.args[0]}; {hint}") from None


def _print_history(store: PolicyStore, name: str) -> None:
    current = store.get(name)
    entries = store.history(name)
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.ts_ms / 1000))
        mark = "  (current)" if current is not None and e.version == current.version else ""
        print(f"{when}  {e.version}{mark}")
    if not entries:
        print(f"sandbox {name}: no policy history")


def _policy(args: argparse.Namespace) -> int:
    backend = backend_of(args.name)
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
    policy = backend.set_policy(args.name, text)
    print(
        f"sandbox {args.name}: policy version {getattr(policy, 'version', '?')} applied "
        "(network rules: next request; filesystem/process/resources/gpu: next create)"
    )
    for warning in getattr(policy, "warnings", ()):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _rm(args: argparse.Namespace) -> int:
    if args.all:
        for backend in backends_in_use():
            for info in get_backend(backend).list():
                get_backend(backend).destroy(info.name)
        return 0
    for name in args.names:
        backend_of(name).destroy(name)
    return 0


def _stop(args: argparse.Namespace) -> int:
    backend_of(args.name).stop(args.name)
    return 0


def _gc(args: argparse.Namespace) -> int:
    used = backends_in_use()
    for backend in available_backends():  # (also those without records: what crashed CLIs left)
        try:
            cleaned = get_backend(backend).cleanup()
        except SandboxError as exc:
            if backend in used:
                print(f"openshell sandbox gc: {backend} backend skipped: {exc}", file=sys.stderr)
            continue
        for item in cleaned:
            print(f"cleaned {item}")
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sandbox_command", required=True, metavar="ACTION")

    p = sub.add_parser("create", help="create a sandbox and print its name")
    p.add_argument(
        "--backend",
        default=None,
        help="sandbox backend: local, docker or kubernetes, or an installed plugin (default: "
        "$OPENSHELL_BACKEND or local); the other commands find a sandbox's backend themselves",
    )
    p.add_argument("--image", help="container image (docker, kubernetes; default: jupyter-openshell/sandbox)")
    p.add_argument("--name", help="sandbox name (default: generated)")
    p.add_argument("--policy", help="policy file (default: deny all egress, default resources)")
    p.add_argument("--workspace", help="host directory mounted read-write at /workspace")
    p.add_argument("--gpu", action="store_true", help="make the NVIDIA GPUs available inside")
    p.add_argument("--json", action="store_true", help="print the sandbox's details as JSON")
    p.set_defaults(func=_create)

    p = sub.add_parser(
        "exec",
        help="run a command in a sandbox; streams output, returns its exit code",
        usage="openshell sandbox exec [--cwd DIR] [--env VAR=VALUE ...] NAME -- CMD [ARGS...]",
    )
    p.add_argument("name")
    p.add_argument("--cwd", help="working directory inside (default /workspace)")
    p.add_argument("--env", action="append", metavar="VAR=VALUE", help="extra environment variable")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    p.set_defaults(func=_exec)

    p = sub.add_parser("ls", help="list sandboxes, their state and which resource enforcement is active")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_ls)

    p = sub.add_parser("logs", help="print a sandbox's log (agent, proxy channel, start-up errors)")
    p.add_argument("name")
    p.set_defaults(func=_logs)

    p = sub.add_parser("policy", help="show a sandbox's policy, or --set FILE to replace it (hot)")
    p.add_argument("name")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--set", metavar="FILE", help="validate FILE and apply it to the running sandbox")
    what.add_argument("--history", action="store_true", help="list the versions applied, oldest first")
    what.add_argument("--diff", metavar="VERSION", help="diff from an earlier version to the current policy")
    what.add_argument("--rollback", metavar="VERSION", help="apply an earlier version again (hot)")
    p.set_defaults(func=_policy)

    p = sub.add_parser("stop", help="end a sandbox's processes, keep its files")
    p.add_argument("name")
    p.set_defaults(func=_stop)

    p = sub.add_parser("rm", help="end every process of a sandbox and remove its state")
    p.add_argument("names", nargs="*")
    p.add_argument("--all", action="store_true", help="remove every sandbox")
    p.set_defaults(func=_rm)

    p = sub.add_parser("gc", help="clean what crashed or exited sandboxes left behind")
    p.set_defaults(func=_gc)
