"""`openshell secret set|ls|rm`: manage the named secrets that inference routes inject.

A value is read from stdin (or a hidden prompt on a terminal), never from the command line, where
other users could see it in /proc; it is written atomically to `<state>/secrets/<name>`, mode 0600.
This module must never print, log or return a secret's value.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence

from .. import paths
from ..proxy import SecretError, check_secret_name, secret_env_name

USER_ERRORS = (SecretError,)  # printed by `openshell` as one message, no traceback


def _set(args: argparse.Namespace) -> int:
    name = check_secret_name(args.name)
    if sys.stdin.isatty():
        value = getpass.getpass(f"value of secret {name} (not echoed): ")
    else:
        value = sys.stdin.read()
    if not value.strip():
        raise SecretError(f"secret {name!r}: empty value; pipe it in: `openshell secret set {name} < FILE`")
    paths.ensure_private_dir(paths.layout().secrets_dir)
    path = paths.layout().secret(name)
    paths.write_private(path, value.strip() + "\n")
    print(f"secret {name} stored in {path} (mode 0600); the proxy uses it from the next request")
    return 0


def _ls(args: argparse.Namespace) -> int:
    directory = paths.ensure_private_dir(paths.layout().secrets_dir)
    names = sorted(p.name for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
    for name in names:
        shadow = " (overridden by the environment)" if os.environ.get(secret_env_name(name)) else ""
        print(f"{name}\tfile {directory / name}{shadow}")
    if not names:
        print(f"no secrets in {directory}; add one with `openshell secret set NAME < FILE`")
    return 0


def _rm(args: argparse.Namespace) -> int:
    path = paths.layout().secret(check_secret_name(args.name))
    try:
        path.unlink()
    except FileNotFoundError:
        raise SecretError(f"secret {args.name!r} not found in {path.parent}") from None
    print(f"secret {args.name} removed")
    return 0


def register(parser: argparse.ArgumentParser, argv: Sequence[str] = ()) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("set", help="store a secret read from stdin (or a hidden prompt)")
    p.add_argument("name", help="secret name, as in a route's token_from_secret")
    p.set_defaults(func=_set)
    p = sub.add_parser("ls", help="list stored secret names (never values)")
    p.set_defaults(func=_ls)
    p = sub.add_parser("rm", help="remove a stored secret")
    p.add_argument("name")
    p.set_defaults(func=_rm)
