"""The `openshell` command: a thin dispatcher over per-area subcommand modules.

Each area (policy, proxy, sandbox, secret, demo) owns a module here with `register(parser, argv)` (argv:
the words after the area's name, so that an area may build only the parser of the action run) and,
optionally, `USER_ERRORS`: exception types that mean bad input or state, which `main` prints as
`openshell AREA: message` (exit status 1) instead of a traceback. Only the area being run is imported
(agents call `openshell sandbox exec` in loops: its start-up must not pay for the policy parser, the
proxy or Jupyter). This file only wires them; it must never contain business logic, nor import an
area's module at import time.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (subcommand, module under jupyter_openshell.cli, help)
_AREAS = [
    ("policy", "policy_cmd", "validate, explain, suggest policies; print the JSON Schema"),
    ("proxy", "proxy_cmd", "run, start, stop the L7 egress policy proxy, or show its status"),
    ("sandbox", "sandbox_cmd", "create, exec into, list, watch and remove sandboxes"),
    ("image", "image_cmd", "build the docker backend's default sandbox image"),
    ("secret", "secret_cmd", "store, list and remove the secrets inference routes inject"),
    ("demo", "demo_cmd", "set up state and open the demo notebook in JupyterLab"),
    ("k8s", "k8s_cmd", "print or install the Kubernetes backend's manifests"),
    ("cluster", "cluster_cmd", "a single-node K3s in Docker for the Kubernetes backend"),
]


def build_parser(area: str | None = None, argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with `area`, only that area's module is imported and its subcommands registered
    (the others are listed in --help by name only), given `argv` (the words after it)."""
    parser = argparse.ArgumentParser(
        prog="openshell", description="jupyter-openshell sandboxes and policy proxy"
    )
    sub = parser.add_subparsers(dest="area", required=True, metavar="COMMAND")
    for name, module, help_text in _AREAS:
        parsed = sub.add_parser(name, help=help_text, description=help_text)
        if area is not None and name != area:
            continue
        mod = importlib.import_module(f"{__name__}.{module}")
        parsed.set_defaults(user_errors=getattr(mod, "USER_ERRORS", ()))
        mod.register(parsed, argv or ())
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    area = argv[0] if argv and argv[0] in {name for name, _, _ in _AREAS} else ""
    args = build_parser(area, argv[1:]).parse_args(argv)  # ("": no area named: --help or a usage error)
    try:
        rc = args.func(args)
    except args.user_errors as exc:
        print(f"openshell {args.area}: {exc}", file=sys.stderr)
        return 1
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
