"""`openshell sandbox flows NAME [--follow] [--denied] [--json]` and the denials part of `openshell sandbox
logs NAME`: the proxy's decisions on one sandbox's requests, in the terminal.

Records come from the proxy (`ProxyClient.flow_page`, the sandbox's current instance, paged by `seq`),
or from the flow log files when the proxy is not running. It must never show another sandbox's records,
nor those of an earlier sandbox of the same name.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from ..flowtext import group_denials, host_allow_command, rule_of, times

POLL_S = 0.5


def _page(name: str, created: float | None, after: int | None, limit: int) -> dict[str, Any]:
    """{"flows", "next_after"} of the sandbox's current instance: from the proxy, else from the files."""
    from ..services.flows import page_or_files

    return page_or_files(name, created, after, limit)


def _row(record: dict) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(float(record.get("ts") or 0)))
    status = str(record.get("status") or "-")
    host = record.get("host") or "?"
    if record.get("port") not in (None, {"http": 80, "https": 443}.get(record.get("scheme") or "")):
        host = f"{host}:{record['port']}"
    why = rule_of(record) + (f"; error: {record['error']}" if record.get("error") else "")
    return (f"{when}  {record.get('decision') or '?':11}  {status:6}  {record.get('method') or '?':7}  "
            f"{host:28}  {record.get('path') or '/':32}  {why}")


HEADER = f"{'TIME':8}  {'DECISION':11}  {'STATUS':6}  {'METHOD':7}  {'HOST':28}  {'PATH':32}  RULE"


def _print(records: list[dict], denied: bool, as_json: bool) -> None:
    for record in records:
        if denied and record.get("decision") != "deny":
            continue
        print(json.dumps(record, sort_keys=True) if as_json else _row(record), flush=True)


def _created(name: str) -> float:
    """The sandbox's instance (SandboxError for an unknown name: a user error, not an empty list)."""
    from ..services import sandboxes

    return sandboxes.status(name).created


def show_flows(name: str, *, follow: bool, denied: bool, as_json: bool, limit: int) -> int:
    created = _created(name)
    page = _page(name, created, None, max(1, limit))
    if not as_json:
        print(HEADER)
    _print(page["flows"], denied, as_json)
    after = page["next_after"]
    try:
        while follow:
            time.sleep(POLL_S)
            page = _page(name, created, after, 500)
            _print(page["flows"], denied, as_json)
            after = page["next_after"]
    except KeyboardInterrupt:
        pass
    return 0


def print_denials(name: str, limit: int = 2000) -> None:
    """The sandbox's denials (one line per distinct request, with a count) below its runtime log."""
    records = _page(name, _created(name), None, limit)["flows"]
    denials = group_denials(records)
    print(f"\n--- denials of sandbox {name} (from the proxy's flow log; "
          f"`openshell sandbox flows {name}` lists every decision) ---")
    if not denials:
        print("none" + (f" among its last {limit} requests" if len(records) >= limit else ""))
    for d in denials:
        when = time.strftime("%H:%M:%S", time.localtime(float(d.record.get("ts") or 0)))
        reason = f"; {d.record['reason']}" if d.record.get("reason") else ""
        print(f"{when}  {d.method} {d.url}  denied {times(d.count)}\n    rule: {rule_of(d.record)}{reason}")
        print(f"    to allow it: {host_allow_command(name, d.method, d.url)}")
    sys.stdout.flush()
