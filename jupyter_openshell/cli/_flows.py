"""`openshell sandbox flows NAME [--follow] [--denied] [--json]` and the denials part of `openshell sandbox
logs NAME`: the proxy's decisions on one sandbox's requests, in the terminal.

Records come from the proxy (`ProxyClient.flow_page`, the sandbox's current instance, paged by `seq`),
or from the flow log files when the proxy is not running. It must never show another sandbox's records,
nor those of an earlier sandbox of the same name.
"""

from __future__ import annotations

import collections
import json
import sys
import time
from typing import Any

from ..flowtext import group_denials, host_allow_command, rule_of, times

POLL_S = 0.5


def _created(name: str) -> float | None:
    from ..runtime import backend_of

    return backend_of(name).status(name).created


def _page(name: str, after: int | None, limit: int) -> dict[str, Any]:
    """{"flows", "next_after"} of the sandbox's current instance: from the proxy, else from the files."""
    from ..proxy import ProxyClient, ProxyError

    try:
        return ProxyClient().flow_page(sandbox=name, after=after, limit=limit)
    except ProxyError:
        pass
    from ..paths import state_dir
    from ..proxy import read_flow_records

    created, newest = _created(name), after or 0
    path = state_dir() / "flows" / "flows.jsonl"
    found: collections.deque[dict] = collections.deque(maxlen=limit if after is None else None)
    for record in read_flow_records(path, -1 if after is None else after):
        newest = max(newest, record.get("seq") or 0)
        if record.get("sandbox") == name and record.get("sandbox_created") == created:
            found.append(record)
            if after is not None and len(found) >= limit:
                return {"flows": list(found), "next_after": record.get("seq") or newest}
    return {"flows": list(found), "next_after": newest}


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


def show_flows(name: str, *, follow: bool, denied: bool, as_json: bool, limit: int) -> int:
    page = _page(name, None, max(1, limit))
    if not as_json:
        print(HEADER)
    _print(page["flows"], denied, as_json)
    after = page["next_after"]
    try:
        while follow:
            time.sleep(POLL_S)
            page = _page(name, after, 500)
            _print(page["flows"], denied, as_json)
            after = page["next_after"]
    except KeyboardInterrupt:
        pass
    return 0


def print_denials(name: str, limit: int = 2000) -> None:
    """The sandbox's denials (one line per distinct request, with a count) below its runtime log."""
    records = _page(name, None, limit)["flows"]
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
