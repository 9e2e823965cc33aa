"""Flow records for the REST API: cursor paging and a live tail, limited to the caller's sandboxes.

The proxy's flow query is by timestamp, and many records may share one `ts`; a ts cursor would repeat or
drop them. So this server reads the log through `jupyter_openshell.proxy.ProxyClient.flows` (re-reading
the last `lag` seconds, deduplicated by record id, so that records the proxy's workers append slightly
out of time order are not missed) and numbers each record it sees once with a monotonic `seq`, in log
order; clients page with `after=<seq>`. Sequence numbers belong to this server process: a restarted
server numbers afresh. It must never return a record of a sandbox the caller does not own.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from traitlets import Float, Int
from traitlets.config import LoggingConfigurable

from ..base import ApiError

PROXY_RING = 10000  # the proxy keeps this many recent records; one look never needs more


class FlowManager(LoggingConfigurable):
    poll_interval = Float(
        0.5, help="Seconds between two looks at the flow log for the websocket stream."
    ).tag(config=True)
    window = Int(
        20000, help="Flow records kept numbered in memory; a cursor older than that resumes at the oldest."
    ).tag(config=True)
    lag = Float(
        5.0, help="Seconds of the flow log read again on each look (records logged slightly out of order)."
    ).tag(config=True)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._index: deque[dict] = deque()  # seq ascending, contiguous
        self._ids: set[str] = set()
        self._seq = 0
        self._high_ts = 0.0
        self._lock = threading.Lock()

    def _client(self) -> Any:
        from jupyter_openshell.proxy import ProxyClient

        return ProxyClient()

    def _ingest(self) -> None:
        """Number the records logged since the last look (call under the lock)."""
        from jupyter_openshell.proxy import ProxyError

        since = max(self._high_ts - self.lag, 1e-9) if self._high_ts else 0
        try:
            records = self._client().flows(since=since, limit=PROXY_RING)
        except ProxyError as exc:
            raise ApiError(503, f"flow records are not available: {exc}") from None
        for record in records:
            rid = str(record.get("id"))
            if rid in self._ids:
                continue
            self._seq += 1
            self._index.append({**record, "seq": self._seq})
            self._ids.add(rid)
            self._high_ts = max(self._high_ts, float(record.get("ts") or 0))
        while len(self._index) > max(self.window, PROXY_RING):
            self._ids.discard(str(self._index.popleft().get("id")))

    def query(self, sandboxes: set[str], after: int | None, limit: int) -> tuple[list[dict], int]:
        """(records, next cursor): records of `sandboxes` in log order, the first `limit` with seq > `after`
        (None: the newest `limit`); pass the cursor as the next `after` to get only later records."""
        if not sandboxes:
            return [], after or 0
        with self._lock:
            self._ingest()
            if after is None:
                return [r for r in self._index if r.get("sandbox") in sandboxes][-limit:], self._seq
            first = self._index[0]["seq"] if self._index else self._seq + 1
            rows = itertools.islice(self._index, max(0, after + 1 - first), None)
            page = list(itertools.islice((r for r in rows if r.get("sandbox") in sandboxes), limit))
            # a short page scanned everything numbered so far: the cursor moves past it all
            return page, (page[-1]["seq"] if len(page) == limit else max(after, self._seq))

    async def follow(self, allowed: Callable[[], set[str]], after: int | None) -> AsyncIterator[list[dict]]:
        """Yield batches of records of the sandboxes `allowed()` returns, with seq > `after` (None: the
        newest first), as they are logged."""
        while True:
            batch, after = await asyncio.to_thread(self.query, allowed(), after, 1000)
            if batch:
                yield batch
                if len(batch) == 1000:
                    continue
            await asyncio.sleep(self.poll_interval)
