"""`jupyter openshell install [--user|--sys-prefix|--prefix DIR]`: install the OpenShell kernelspec and
enable the server extension in the same scope.

It must never touch another kernelspec or another extension's configuration.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter openshell", description="Jupyter integration of jupyter-openshell"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    inst = sub.add_parser(
        "install",
        help="install the 'Python 3 (OpenShell sandbox)' kernelspec and enable the server extension",
    )
    scope = inst.add_mutually_exclusive_group()
    scope.add_argument("--user", action="store_true", help="for the current user (~/.local/share/jupyter)")
    scope.add_argument(
        "--sys-prefix", action="store_true", help="into this environment (sys.prefix); default"
    )
    scope.add_argument("--prefix", metavar="DIR", help="into another prefix (no extension enabling)")
    inst.add_argument("--policy", metavar="FILE", default="", help="policy file of the kernel's sandboxes")
    inst.add_argument("--gpu", action="store_true", help="give the kernels' sandboxes the host's GPUs")
    inst.add_argument("--pool-size", type=int, default=None, help="warm kernel sandboxes per configuration")
    return parser


def install(args: argparse.Namespace) -> int:
    import os

    from jupyter_server.extension.serverextension import toggle_server_extension_python

    from jupyter_openshell.kernel.kernelspec import install as install_kernelspec

    config: dict = {"gpu": args.gpu}
    if args.policy:
        config["policy_file"] = os.path.abspath(args.policy)
    if args.pool_size is not None:
        config["pool_size"] = args.pool_size
    prefix = args.prefix or (None if args.user else sys.prefix)
    where = install_kernelspec(user=args.user, prefix=prefix, **config)
    print(f"installed kernelspec 'openshell' in {where}")
    if not args.prefix:
        toggle_server_extension_python(
            "jupyter_openshell", enabled=True, user=args.user, sys_prefix=not args.user
        )
        print(f"enabled server extension jupyter_openshell ({'user' if args.user else 'sys-prefix'})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "install":
        return install(args)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
