"""`openshell image build`: build the Docker backend's default sandbox image on this machine.

A thin layer over `jupyter_openshell.runtime.docker._image.build`: parse arguments, print one line per
stage. It must never push an image anywhere.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..runtime import SandboxError

USER_ERRORS = (SandboxError,)


def _build(args: argparse.Namespace) -> int:
    from ..runtime.docker import _image

    log = lambda line: print(line, flush=True)  # noqa: E731
    _image.build(None if args.proxy else args.tag, rebuild=args.rebuild, base=args.base, log=log)
    if args.proxy:  # (the in-cluster proxy's image starts from the default sandbox image)
        from ..runtime.kubernetes import _proxy_image

        _proxy_image.build(args.tag, log=log)
    return 0


def register(parser: argparse.ArgumentParser, argv: Sequence[str] = ()) -> None:
    sub = parser.add_subparsers(dest="image_command", required=True, metavar="ACTION")
    p = sub.add_parser(
        "build",
        help="build the default sandbox image (jupyter-openshell/sandbox:<version>) for --backend docker",
        description="Build the default image of the docker backend: Debian (debootstrap, no registry "
        "needed) or --base IMAGE, plus ipykernel and what the OpenShell kernel imports, installed by this "
        "machine's pip. Skipped when an image with the same content is already there.",
    )
    p.add_argument("--tag", default=None, help="image name (default: jupyter-openshell/sandbox:<version>)")
    p.add_argument("--rebuild", action="store_true", help="build even if an up-to-date image is there")
    p.add_argument(
        "--base",
        default=None,
        metavar="IMAGE",
        help="start from this image's filesystem (pulled if a registry is reachable) instead of debootstrap",
    )
    p.add_argument(
        "--proxy",
        action="store_true",
        help="also build the Kubernetes backend's proxy image (jupyter-openshell/proxy:<version>)",
    )
    p.set_defaults(func=_build)
