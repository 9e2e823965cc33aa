"""The `openshell` command: a thin dispatcher over per-area subcommand modules.

Each area (policy, proxy, sandbox, secret, demo) owns a module here with `register(subparsers)` and,
optionally, `USER_ERRORS`: exception types that mean bad input or state, which `main` prints as
`openshell AREA: message` (exit status 1) instead of a traceback. This file only wires them; it must
never contain business logic.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (subcommand, module under jupyter_openshell.cli, help)
_AREAS = [
    ("policy", "policy_cmd", "validate, explain, suggest policies; print the JSON Schema"),
    ("proxy", "proxy_cmd", "run the L7 egress policy proxy"),
    ("sandbox", "sandbox_cmd", "create, exec into, list and remove sandboxes"),
    ("image", "image_cmd", "build the docker backend's default sandbox image"),
    ("secret", "secret_cmd", "store, list and remove the secrets inference routes inject"),
    ("demo", "demo_cmd", "set up state and open the demo notebook in JupyterLab"),
    ("k8s", "k8s_cmd", "print or install the Kubernetes backend's manifests"),
    ("cluster", "cluster_cmd", "a single-node K3s in Docker for the Kubernetes backend"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openshell", description="jupyter-openshell sandboxes and policy proxy"
    )
    sub = parser.add_subparsers(dest="area", required=True, metavar="COMMAND")
    for name, module, help_text in _AREAS:
        try:
            mod = importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{module}":
                raise
            continue
        area = sub.add_parser(name, help=help_text, description=help_text)
        area.set_defaults(user_errors=getattr(mod, "USER_ERRORS", ()))
        mod.register(area)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except args.user_errors as exc:
        print(f"openshell {args.area}: {exc}", file=sys.stderr)
        return 1
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
