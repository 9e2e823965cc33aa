"""`openshell cluster up|down|status`: a single-node K3s in Docker for the Kubernetes backend.

A thin layer over `jupyter_openshell.cluster._k3s`: parse arguments, print. It must never print the
kubeconfig's credentials.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from ..runtime import SandboxError

USER_ERRORS = (SandboxError,)


def _up(args: argparse.Namespace) -> int:
    from ..cluster import _k3s

    st = _k3s.up(
        port=args.port,
        image=args.k3s_image,
        pull=args.pull,
        airgap=args.airgap_images,
        log=lambda line: print(line, flush=True),
    )
    print(
        f"cluster up: kubeconfig {st['kubeconfig']}; `openshell sandbox create --backend kubernetes` uses it"
    )
    return 0


def _down(args: argparse.Namespace) -> int:
    from ..cluster import _k3s

    for item in _k3s.down(keep_data=args.keep_data):
        print(f"removed {item}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from ..cluster import _k3s

    st = _k3s.status()
    if args.json:
        print(json.dumps(st, indent=2))
    elif st["container"] is None:
        print("no cluster (start one with `openshell cluster up`)")
    else:
        print(
            f"container {st['container']['name']}: {st['container']['status']}; "
            f"kubeconfig {st['kubeconfig']}; nodes {st['nodes']}"
        )
    return 0 if st["container"] is not None else 1


def register(parser: argparse.ArgumentParser, argv: Sequence[str] = ()) -> None:
    from ..cluster._k3s import K3S_IMAGE

    sub = parser.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    p = sub.add_parser("up", help="start a single-node K3s in Docker and install OpenShell in it")
    p.add_argument("--port", type=int, default=6443, help="API port on 127.0.0.1 (default 6443)")
    p.add_argument("--k3s-image", default=K3S_IMAGE, help=f"K3s server image (default, pinned: {K3S_IMAGE})")
    p.add_argument("--pull", action="store_true", help="pull the K3s image when it is not on this machine")
    p.add_argument(
        "--airgap-images",
        type=Path,
        metavar="TAR",
        help="K3s's air-gap image tarball (its own pods' images, for a machine without a registry)",
    )
    p.set_defaults(func=_up)
    p = sub.add_parser("down", help="remove the cluster")
    p.add_argument("--keep-data", action="store_true", help="keep the volume with K3s's state")
    p.set_defaults(func=_down)
    p = sub.add_parser("status", help="what runs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_status)
