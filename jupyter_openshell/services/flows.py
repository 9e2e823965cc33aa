"""The proxy's decisions (flow records) for the layers above: one sandbox instance's, or several sandboxes'
merged by the proxy's `seq` (the REST API), paged by cursor; from the proxy, or from its log files when it
does not run (the CLI).

A sandbox's records are those of its current instance (`created`): an earlier sandbox of the same name,
maybe someone else's, is never returned. It must never return a record of a sandbox it was not asked for.
"""

from __future__ import annotations

import collections
from typing import Any

from .errors import ServiceError


class FlowsUnavailable(ServiceError):
    """The proxy could not answer (it does not run, or failed)."""


def _client() -> Any:
    from ..proxy import ProxyClient

    return ProxyClient()


def flow_page(name: str, after: int | None = None, limit: int = 200, created: Any = "current") -> dict:
    """{"flows", "next_after"} of sandbox `name` (`created`: "current" = its registered instance, "any",
    None or a creation time) from the running proxy: the records after the cursor `after` (a seq; None: the
    newest `limit`); pass `next_after` back to get only later ones. ProxyError when the proxy does not run."""
    return _client().flow_page(sandbox=name, after=after, limit=limit, created=created)


def flows(name: str, since: float = 0, limit: int = 200) -> list[dict]:
    """Records of the sandbox now called `name` since `since` (a time), oldest first."""
    return _client().flows(sandbox=name, since=since, limit=limit)


def page_or_files(name: str, created: float | None, after: int | None, limit: int) -> dict:
    """`flow_page` of instance `created` of sandbox `name`; when the proxy does not run, the same read from
    the flow log files (rotated ones included)."""
    from ..paths import layout
    from ..proxy import ProxyError, read_flow_records

    try:
        return _client().flow_page(sandbox=name, after=after, limit=limit)
    except ProxyError:
        pass
    newest = after or 0
    found: collections.deque[dict] = collections.deque(maxlen=limit if after is None else None)
    for record in read_flow_records(layout().flow_log, -1 if after is None else after):
        newest = max(newest, record.get("seq") or 0)
        if record.get("sandbox") == name and record.get("sandbox_created") == created:
            found.append(record)
            if after is not None and len(found) >= limit:
                return {"flows": list(found), "next_after": record.get("seq") or newest}
    return {"flows": list(found), "next_after": newest}


def query(sandboxes: dict[str, float | None], after: int | None, limit: int) -> tuple[list[dict], int]:
    """(records, next cursor): records of `sandboxes` ({name: created}) in log order, the first `limit` with
    seq > `after` (None: the newest `limit`); pass the cursor as the next `after` to get only later records.
    FlowsUnavailable when the proxy cannot answer."""
    from ..proxy import ProxyError

    if not sandboxes:
        return [], after or 0
    client = _client()
    records: list[dict] = []
    cursors = []
    try:
        for name, created in sorted(sandboxes.items()):
            page = client.flow_page(sandbox=name, created=created, after=after, limit=limit)
            records += page["flows"]
            cursors.append(page["next_after"])
    except ProxyError as exc:
        raise FlowsUnavailable(f"flow records are not available: {exc}") from None
    # every sandbox's answer is complete up to the smallest cursor: later records come next time
    cursor = min(cursors)
    records = sorted((r for r in records if r["seq"] <= cursor), key=lambda r: r["seq"])
    if after is None:
        return records[-limit:], cursor
    if len(records) >= limit:
        records = records[:limit]
        cursor = records[-1]["seq"]
    return records, max(cursor, after)
