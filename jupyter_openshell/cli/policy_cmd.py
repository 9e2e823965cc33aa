"""`openshell policy ...`: check, explain, schema, suggest and presets, thin wrappers over
`jupyter_openshell.policy`.

It must never contain policy logic of its own; exit status 1 means the input was rejected.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..policy import (
    BadRequest,
    PolicyError,
    RequestInfo,
    json_schema,
    load_policy_file,
    normalize_host,
    presets,
    suggest,
)


def register(parser: argparse.ArgumentParser, argv: Sequence[str] = ()) -> None:
    sub = parser.add_subparsers(dest="policy_command", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser("check", help="validate a policy file (errors: exit 1; warnings are printed)")
    p.add_argument("file")
    p.set_defaults(func=_check)

    p = sub.add_parser("explain", help="decide one request and show the rule that made the decision")
    p.add_argument("file")
    p.add_argument("method")
    p.add_argument("url")
    p.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="NAME: VALUE",
        help="request header (repeatable), e.g. -H 'X-HTTP-Method-Override: DELETE'",
    )
    p.add_argument("--caller", default="host", help="caller identity for inference routes (default: host)")
    p.add_argument("--json", action="store_true", help="print the decision as JSON")
    p.set_defaults(func=_explain)

    p = sub.add_parser("schema", help="print the JSON Schema of the policy format")
    p.set_defaults(func=_schema)

    p = sub.add_parser("presets", help="list the presets (`- preset: NAME` entries), or show one's rules")
    p.add_argument("name", nargs="?")
    p.set_defaults(func=_presets)

    p = sub.add_parser("suggest", help="print a minimal policy allowing the flows in a flow log (JSON lines)")
    p.add_argument("flowlog", help="flows.jsonl ('-' for stdin); its rotated files (.N) are read too")
    p.add_argument("--no-rotated", action="store_true", help="read only FLOWLOG, not its rotated files")
    p.set_defaults(func=_suggest)


def _load(path: str):
    try:
        return load_policy_file(path)
    except PolicyError as exc:
        print(str(exc), file=sys.stderr)
        return None
    except OSError as exc:
        print(f"{path}: cannot read policy: {exc.strerror or exc}", file=sys.stderr)
        return None


def _check(args: argparse.Namespace) -> int:
    policy = _load(args.file)
    if policy is None:
        return 1
    for w in policy.warnings:
        print(str(w), file=sys.stderr)
    n = len(policy.egress)
    print(
        f"{args.file}: OK (version {policy.version}, mode {policy.mode}, {n} egress rule{'s' * (n != 1)}, "
        f"{len(policy.routes)} inference route{'s' * (len(policy.routes) != 1)}, "
        f"{len(policy.warnings)} warning{'s' * (len(policy.warnings) != 1)})"
    )
    return 0


def _explain(args: argparse.Namespace) -> int:
    policy = _load(args.file)
    if policy is None:
        return 1
    headers = []
    for h in args.header:
        name, sep, value = h.partition(":")
        if not sep:
            print(f"bad header {h!r}: expected 'Name: value'", file=sys.stderr)
            return 2
        headers.append((name.strip(), value.strip()))
    try:
        req = RequestInfo.from_url(args.method, args.url, headers)
    except BadRequest as exc:
        print(f"bad request: {exc}", file=sys.stderr)
        return 1
    compiled = policy.compile()
    d = compiled.decide(req)
    route = compiled.route_inference(args.caller, req.host, req.path) if d.status != 400 else None
    if args.json:
        out = d.to_dict()
        out["route"] = route.describe() if route else None
        print(json.dumps(out, indent=2))
        return 0
    print(f"decision: {d.action}" + (f" ({d.status})" if d.status else ""))
    if d.status == 400:
        print(f"reason:   {d.reason}")
        return 0
    host = normalize_host(d.host).url_host
    print(
        f"request:  {d.method} {d.scheme}://{host}:{d.port}{d.path}" + (f"?{req.query}" if req.query else "")
    )
    print(f"rule:     {d.rule}")
    print(f"reason:   {d.reason}")
    print(f"policy:   {policy.source} version {d.policy_version} (mode {policy.mode})")
    if route is not None:
        print(f"route:    {route.describe()} (caller {args.caller!r}; the proxy routes this instead)")
    if d.hint:
        print("hint:     to allow it, add this rule under network.egress (above the final deny):")
        print("\n".join("    " + line for line in d.hint.splitlines()))
        for v in d.variants[1:]:
            print(f"or wider: {v.label}: {v.command}")
    return 0


def _presets(args: argparse.Namespace) -> int:
    found = presets()
    if args.name is None:
        print("\n".join(f"{p.name:12} {p.description}" for p in found.values()))
        return 0
    if args.name not in found:
        print(f"unknown preset {args.name!r}: one of {', '.join(found)}", file=sys.stderr)
        return 1
    print(f"# - preset: {args.name}  expands to:\n{found[args.name].yaml}")
    return 0


def _schema(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))
    return 0


def _suggest(args: argparse.Namespace) -> int:
    from jupyter_openshell.proxy import flow_log_files

    if args.flowlog == "-":
        sources = [("-", sys.stdin.read())]
    else:  # a rotated log: its older files (flows.jsonl.N .. .1) first
        paths = [Path(args.flowlog)] if args.no_rotated else flow_log_files(Path(args.flowlog))
        sources = [(str(p), p.read_text(encoding="utf-8")) for p in paths]
    records = []
    for name, text in sources:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                print(f"{name}:{n}: skipped, not JSON: {exc.msg}", file=sys.stderr)
    sys.stdout.write(suggest(records))
    return 0
