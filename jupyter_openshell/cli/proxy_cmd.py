"""`openshell proxy`: run the L7 egress policy proxy in the foreground.

Only argument parsing lives here; the proxy itself is `jupyter_openshell.proxy._server`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected ADDR:PORT (e.g. 127.0.0.1:3128), got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _pin(text: str) -> tuple[str, str]:
    name, sep, ip = text.partition("=")
    if not sep or not name or not ip:
        raise argparse.ArgumentTypeError(f"expected NAME=IP, got {text!r}")
    return name, ip


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", required=True, type=Path,
                        help="policy file for callers that are not a registered sandbox (hot-reloaded)")
    parser.add_argument("--listen", default="127.0.0.1:0", type=_listen, metavar="ADDR:PORT",
                        help="proxy listener (default 127.0.0.1 on a free port; see <state>/run/proxy.json)")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="proxy processes sharing the listener (SO_REUSEPORT)")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="state directory (default: $OPENSHELL_STATE_DIR)")
    parser.add_argument("--upstream-ca", type=Path, default=None, metavar="PEM",
                        help="extra CA certificates trusted for upstream TLS (tests, private servers)")
    parser.add_argument("--resolve", type=_pin, action="append", default=[], metavar="NAME=IP",
                        help="answer lookups of NAME with IP instead of DNS (still address-checked)")
    parser.add_argument("--reload-interval", type=float, default=0.05, metavar="S",
                        help="seconds between checks of the policy files")
    parser.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jupyter_openshell.paths import state_dir
    from jupyter_openshell.proxy._server import ProxyConfig, serve

    if args.workers < 1:
        print("openshell proxy: --workers must be at least 1", file=sys.stderr)
        return 2
    if not args.policy.exists():
        print(f"openshell proxy: policy file {args.policy} not found", file=sys.stderr)
        return 2
    host, port = args.listen
    cfg = ProxyConfig(policy_file=args.policy.resolve(), state_dir=(args.state_dir or state_dir()).resolve(),
                      listen_host=host, listen_port=port, workers=args.workers,
                      worker_index=args.worker_index,
                      upstream_ca=args.upstream_ca, resolve=dict(args.resolve),
                      reload_interval=args.reload_interval)
    return serve(cfg)
