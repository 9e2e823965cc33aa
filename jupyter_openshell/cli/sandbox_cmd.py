"""`openshell sandbox ...`: create, exec into, list, inspect, watch and remove sandboxes.

A thin layer over `jupyter_openshell.services` (sandboxes, policies, flows): parse arguments, call the
service, print. Each action imports what it needs when it runs: `exec` loads only the runtime's exec path
(`runtime.exec_in`: no policy parser, no proxy client, no bubblewrap set-up), since agents call it in loops.
It must never contain sandbox logic, and never print a policy's secrets (policies hold only secret names).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..runtime import SandboxError

TYPE_CHECKING = False  # (not typing.TYPE_CHECKING: `openshell sandbox exec` does not import typing)
if TYPE_CHECKING:
    from typing import Any

# Errors of bad input or state: `openshell` prints them as one message, no traceback.
USER_ERRORS = (SandboxError,)
ACTIONS = ("create", "exec", "ls", "logs", "flows", "policy", "allow", "stop", "rm", "gc")


def _show_proxy_notices() -> None:
    """Print what the proxy client reports (a proxy started or stopped for sandboxes) on stderr."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("openshell: %(message)s"))
    logger = logging.getLogger("jupyter_openshell.proxy")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _skipped(action: str) -> Any:
    """Report a backend that could not answer (its sandboxes are left out)."""

    def report(backend: str, exc: SandboxError) -> None:
        print(f"openshell sandbox {action}: {backend} sandboxes skipped: {exc}", file=sys.stderr)

    return report


def _create(args: argparse.Namespace) -> int:
    import json

    from ..services import sandboxes

    _show_proxy_notices()
    spec = sandboxes.SandboxSpec.from_policy_file(
        args.policy, name=args.name, workspace=args.workspace, gpu=True if args.gpu else None,
        image=args.image,
    )
    info = sandboxes.create(spec, args.backend)
    for warning in info.details.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(sandboxes.to_json([info])[0], indent=2))
    else:
        print(info.name)
    return 0


def _exec(args: argparse.Namespace) -> int:
    from ._exec_wait import run

    argv = args.command[1:] if args.command[:1] == ["--"] else args.command
    return run(args.name, argv, args.cwd, dict(e.split("=", 1) for e in args.env or []))


def _ls(args: argparse.Namespace) -> int:
    import json

    from ..services import sandboxes
    from ._sandbox_table import print_table

    infos = sandboxes.list_all(_skipped("ls"))
    if args.json:
        print(json.dumps(sandboxes.to_json(infos), indent=2))
    else:
        print_table(infos)
    return 0


def _logs(args: argparse.Namespace) -> int:
    from ..services import sandboxes
    from ._flows import print_denials

    sys.stdout.write(sandboxes.logs(args.name))
    sys.stdout.flush()
    print_denials(args.name)
    return 0


def _flows(args: argparse.Namespace) -> int:
    from ._flows import show_flows

    return show_flows(args.name, follow=args.follow, denied=args.denied, as_json=args.json, limit=args.limit)


def _policy(args: argparse.Namespace) -> int:
    from ._sandbox_policy import policy

    return policy(args)


def _allow(args: argparse.Namespace) -> int:
    from ._sandbox_policy import allow

    return allow(args.name, args.method, args.url)


def _rm(args: argparse.Namespace) -> int:
    from ..services import sandboxes

    _show_proxy_notices()
    names = [info.name for info in sandboxes.list_all(_skipped("rm"))] if args.all else list(args.names)
    if not names:
        print("no sandbox to remove" if args.all else "name the sandboxes to remove, or --all",
              file=sys.stderr)
        return 0 if args.all else 2
    for name in names:
        sandboxes.destroy(name)
        print(f"removed sandbox {name}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    from ..services import sandboxes

    _show_proxy_notices()
    sandboxes.stop(args.name)
    print(f"stopped sandbox {args.name} (its files stay; `openshell sandbox rm {args.name}` removes them)")
    return 0


def _gc(args: argparse.Namespace) -> int:
    from ._sandbox_gc import gc

    _show_proxy_notices()
    return gc()


def _action(argv: Sequence[str]) -> str | None:
    """The action named in `argv` (the words after `sandbox`)."""
    return next((word for word in argv if not word.startswith("-")), None)


def register(parser: argparse.ArgumentParser, argv: Sequence[str] = ()) -> None:
    """The `sandbox` subcommands; with `argv` naming one, only that one (argparse builds a parser per
    action: the other nine cost `sandbox exec` ~10 ms)."""
    sub = parser.add_subparsers(dest="sandbox_command", required=True, metavar="ACTION")
    only = _action(argv)
    if only not in ACTIONS:
        only = None

    def want(action: str) -> bool:
        return only is None or action == only

    if want("create"):
        p = sub.add_parser("create", help="create a sandbox and print its name")
        p.add_argument(
            "--backend",
            default=None,
            help="sandbox backend: local, docker or kubernetes, or an installed plugin (default: "
            "$OPENSHELL_BACKEND or local); the other commands find a sandbox's backend themselves",
        )
        p.add_argument("--image",
                       help="container image (docker, kubernetes; default: jupyter-openshell/sandbox)")
        p.add_argument("--name", help="sandbox name (default: generated)")
        p.add_argument("--policy", help="policy file (default: deny all egress, default resources)")
        p.add_argument("--workspace", help="host directory mounted read-write at /workspace")
        p.add_argument("--gpu", action="store_true", help="make the NVIDIA GPUs available inside")
        p.add_argument("--json", action="store_true", help="print the sandbox's details as JSON")
        p.set_defaults(func=_create)

    if want("exec"):
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

    if want("ls"):
        p = sub.add_parser("ls", help="list sandboxes, their state and which resource enforcement is active")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=_ls)

    if want("logs"):
        p = sub.add_parser(
            "logs", help="print a sandbox's log (agent, proxy channel, start-up errors), then its denials"
        )
        p.add_argument("name")
        p.set_defaults(func=_logs)

    if want("flows"):
        p = sub.add_parser(
            "flows",
            help="list the proxy's decisions on a sandbox's requests (method, host, path, rule, status)",
        )
        p.add_argument("name")
        p.add_argument("--follow", "-f", action="store_true", help="keep printing new decisions until Ctrl-C")
        p.add_argument("--denied", action="store_true", help="only denials")
        p.add_argument("--json", action="store_true", help="one JSON flow record per line")
        p.add_argument("--limit", type=int, default=50, metavar="N", help="the last N decisions (default 50)")
        p.set_defaults(func=_flows)

    if want("policy"):
        p = sub.add_parser("policy", help="show a sandbox's policy, or --set FILE to replace it (hot)")
        p.add_argument("name")
        what = p.add_mutually_exclusive_group()
        what.add_argument("--set", metavar="FILE", help="validate FILE and apply it to the running sandbox")
        what.add_argument("--history", action="store_true", help="list the versions applied, oldest first")
        what.add_argument("--diff", metavar="VERSION",
                          help="diff from an earlier version to the current policy")
        what.add_argument("--rollback", metavar="VERSION", help="apply an earlier version again (hot)")
        p.set_defaults(func=_policy)

    if want("allow"):
        p = sub.add_parser(
            "allow",
            help="add the narrowest allow rule for one request to a sandbox's policy (hot), e.g. "
            "`openshell sandbox allow NAME GET https://pypi.org/simple/`",
        )
        p.add_argument("name")
        p.add_argument("method", help="HTTP method, e.g. GET")
        p.add_argument("url", help="the URL the sandbox requested, e.g. https://pypi.org/simple/requests/")
        p.set_defaults(func=_allow)

    if want("stop"):
        p = sub.add_parser("stop", help="end a sandbox's processes, keep its files")
        p.add_argument("name")
        p.set_defaults(func=_stop)

    if want("rm"):
        p = sub.add_parser("rm", help="end every process of a sandbox and remove its state")
        p.add_argument("names", nargs="*")
        p.add_argument("--all", action="store_true", help="remove every sandbox")
        p.set_defaults(func=_rm)

    if want("gc"):
        p = sub.add_parser(
            "gc",
            help="remove what crashed or exited sandboxes left behind, and sandboxes whose owner (a Jupyter "
            "server, a kernel's host) is gone",
        )
        p.set_defaults(func=_gc)
