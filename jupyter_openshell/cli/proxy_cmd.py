"""`openshell proxy [run|start|status|stop]`: run the L7 egress policy proxy in the foreground, start it
in the background (kept until `stop`, unlike the one `sandbox create` starts, which stops with the last
sandbox), or report on / stop the one serving this state directory.

Only argument parsing and printing live here; the proxy itself is `jupyter_openshell.proxy._server`.
It must never print a secret value.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected ADDR:PORT (e.g. 127.0.0.1:3128), got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _pin(text: str) -> tuple[str, str]:
    name, sep, ip = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=IP (or NAME= for a name that does not resolve), "
                                         f"got {text!r}")
    return name, ip


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    scale = units.get(t[-1:], 1)
    number = t[:-1] if t[-1:] in units else t
    if not number.isdigit() or int(number) * scale < 1:
        raise argparse.ArgumentTypeError(f"expected a size in bytes (e.g. 65536, 64M), got {text!r}")
    return int(number) * scale


def _trust(text: str) -> str:
    from jupyter_openshell.proxy._ca import TRUST_STORES

    if text in TRUST_STORES or Path(text).is_file():
        return text
    raise argparse.ArgumentTypeError(f"expected {', '.join(TRUST_STORES)} or a PEM file, got {text!r}")


def register(parser: argparse.ArgumentParser, argv: Sequence[str] = ()) -> None:
    parser.add_argument("action", nargs="?", choices=["run", "start", "status", "stop"], default="run",
                        help="run (default) the proxy in the foreground; start it in the background "
                        "(kept until stop); status or stop the running one")
    parser.add_argument("--policy", type=Path,
                        help="policy file for callers that are not a registered sandbox (hot-reloaded); "
                        "required to run; start: default <state>/policies/default.yaml (deny all)")
    parser.add_argument("--json", action="store_true", help="status: print the raw JSON")
    parser.add_argument("--listen", default="127.0.0.1:0", type=_listen, metavar="ADDR:PORT",
                        help="proxy listener (default 127.0.0.1 on a free port; see <state>/run/proxy.json)")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="proxy processes sharing the listener (SO_REUSEPORT)")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="state directory (default: $OPENSHELL_STATE_DIR)")
    parser.add_argument("--upstream-ca", type=Path, default=None, metavar="PEM",
                        help="extra CA certificates trusted for upstream TLS (tests, private servers)")
    parser.add_argument("--upstream-trust", type=_trust, default="system+certifi", metavar="STORE",
                        help="CA certificates upstream servers are verified against: system+certifi "
                        "(default: this machine's OpenSSL store, SSL_CERT_FILE/SSL_CERT_DIR honoured, plus "
                        "certifi), system, certifi, or a PEM file trusted alone")
    parser.add_argument("--connect-timeout", type=float, default=30.0, metavar="S",
                        help="seconds an upstream connection attempt may take before the request is "
                        "answered 504 (default 30; 0: the kernel's own timeout)")
    parser.add_argument("--max-request-line", type=_size, default=None, metavar="SIZE",
                        help="longest request line / URL (default 16k; longer: 414)")
    parser.add_argument("--max-header-bytes", type=_size, default=None, metavar="SIZE",
                        help="largest request header section (default 64k; larger: 431)")
    parser.add_argument("--max-header-count", type=int, default=None, metavar="N",
                        help="most request header fields (default 200; more: 431)")
    parser.add_argument("--max-body", type=_size, default=None, metavar="SIZE",
                        help="largest request body, counted as it streams (default 100M; larger: 413); "
                        "a policy may set its own (network.limits.max_body)")
    parser.add_argument("--resolve", type=_pin, action="append", default=[], metavar="NAME=IP",
                        help="answer lookups of NAME with IP instead of DNS (still address-checked); "
                        "NAME= makes NAME not resolve")
    parser.add_argument("--reload-interval", type=float, default=0.05, metavar="S",
                        help="seconds between checks of the policy files")
    parser.add_argument("--flow-log-max-bytes", type=_size, default=None, metavar="SIZE",
                        help="rotate flows/flows.jsonl when it would pass SIZE (bytes, or with k/M/G; "
                        "default 64M)")
    parser.add_argument("--flow-log-keep", type=int, default=None, metavar="N",
                        help="rotated flow logs kept (flows.jsonl.1 .. .N, default 4; at least 1)")
    parser.add_argument("--kube-namespace", default=None, metavar="NS",
                        help="also serve the Kubernetes backend's sandboxes: watch namespace NS's sandbox "
                        "ConfigMaps (their policies and credentials; needs the kubernetes client)")
    parser.add_argument("--kubeconfig", default=None, metavar="FILE",
                        help="with --kube-namespace: the kubeconfig to watch with (default: the in-cluster "
                        "service account)")
    parser.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--flow-fd", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--channel-fd", type=int, default=None, help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def _status_lines(st: dict[str, Any]) -> list[str]:
    lines = [f"proxy pid {st['pid']} on {st['listen']}, {st['workers']} worker(s), "
             f"up {st['uptime_s']:.0f} s; CA bundle {st['ca_bundle']}; flow log {st['flow_log']}"]
    if not st.get("policies_agree", True):
        lines.append("WARNING: the workers disagree on policy versions (see --json: worker_policies)")
    for name, pol in sorted(st.get("policies", {}).items()):
        version = pol["version"] or "none (everything denied)"
        line = f"  {name}: version {version} ({pol['mode']}) {pol['file']}"
        if pol.get("last_error"):
            error = textwrap.indent(pol["last_error"], "      ")
            line += f"\n    last reload failed, the version above stays in force:\n{error}"
        lines.append(line)
    return lines


def _start(args: argparse.Namespace) -> int:
    from jupyter_openshell.proxy import ProxyClient

    client = ProxyClient(args.state_dir)
    if client.is_running():
        st = client.status()
        kept = "; it was started for sandboxes and is now kept until `openshell proxy stop`"
        print(f"openshell proxy: already running (pid {st['pid']} on {st['listen']})"
              + (kept if client.keep() else ""))
        return 0
    extra = [arg for pin in args.resolve for arg in ("--resolve", "=".join(pin))]
    if args.upstream_ca:
        extra += ["--upstream-ca", str(args.upstream_ca.resolve())]
    host, port = args.listen
    st = client.ensure_running(args.policy.resolve() if args.policy else None,
                               listen=f"{host}:{port}", workers=args.workers, extra_args=extra)
    print(f"openshell proxy: started in the background: pid {st['pid']}, listening on {st['listen']}, "
          f"log {client.log_file}; `openshell proxy stop` stops it")
    return 0


def _control(args: argparse.Namespace) -> int:
    from jupyter_openshell.proxy import ProxyClient

    client = ProxyClient(args.state_dir)
    if args.action == "start":
        return _start(args)
    if not client.is_running():
        print(f"openshell proxy: no proxy is running for state directory {client.state_dir}")
        return 1 if args.action == "status" else 0
    if args.action == "stop":
        started = time.monotonic()
        client.stop()
        print(f"openshell proxy: stopped in {time.monotonic() - started:.1f} s; sandboxes have no way out "
              "until it is started again")
        return 0
    st = client.status()
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    print("\n".join(_status_lines(st)))
    print("  started for sandboxes: stops with the last one (`openshell proxy start` keeps it)"
          if client.auto_started() else "  kept until `openshell proxy stop`")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action != "run":
        return _control(args)
    from jupyter_openshell.paths import state_dir
    from jupyter_openshell.proxy._limits import Limits
    from jupyter_openshell.proxy._server import ProxyConfig, serve

    if args.policy is None:
        print("openshell proxy: --policy FILE is required to run the proxy", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("openshell proxy: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.flow_log_keep is not None and args.flow_log_keep < 1:
        print("openshell proxy: --flow-log-keep must be at least 1", file=sys.stderr)
        return 2
    if not args.policy.exists():
        print(f"openshell proxy: policy file {args.policy} not found", file=sys.stderr)
        return 2
    if args.kube_namespace and args.worker_index == 0:
        try:
            import kubernetes  # noqa: F401
        except ImportError:
            print("openshell proxy: --kube-namespace needs the kubernetes client: "
                  "pip install 'jupyter-openshell[kubernetes]'", file=sys.stderr)
            return 2
    if args.max_header_count is not None and args.max_header_count < 1:
        print("openshell proxy: --max-header-count must be at least 1", file=sys.stderr)
        return 2
    host, port = args.listen
    defaults = Limits()
    limits = Limits(max_request_line=args.max_request_line or defaults.max_request_line,
                    max_header_bytes=args.max_header_bytes or defaults.max_header_bytes,
                    max_header_count=args.max_header_count or defaults.max_header_count,
                    max_body=args.max_body or defaults.max_body)
    cfg = ProxyConfig(policy_file=args.policy.resolve(), state_dir=(args.state_dir or state_dir()).resolve(),
                      listen_host=host, listen_port=port, workers=args.workers,
                      worker_index=args.worker_index,
                      upstream_ca=args.upstream_ca, upstream_trust=args.upstream_trust, limits=limits,
                      connect_timeout=max(0.0, args.connect_timeout), resolve=dict(args.resolve),
                      reload_interval=args.reload_interval, flow_fd=args.flow_fd,
                      channel_fd=args.channel_fd, kube_namespace=args.kube_namespace,
                      kubeconfig=args.kubeconfig)
    if args.flow_log_max_bytes is not None:
        cfg.flow_max_bytes = args.flow_log_max_bytes
    if args.flow_log_keep is not None:
        cfg.flow_keep = args.flow_log_keep
    return serve(cfg)
