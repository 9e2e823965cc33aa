"""Flow records for the REST API: cursor paging and a live tail, limited to the caller's sandboxes.

The cursor is the proxy's own `seq` (numbered by the proxy in log order, continued across proxy restarts
and rotated log files), so a client's `after=<seq>` stays valid when this server restarts. Each owned
sandbox is read through `jupyter_openshell.proxy.ProxyClient.flow_page` for its current instance only
(its `created`): an earlier sandbox of the same name, maybe someone else's, is never shown. It must never
return a record of a sandbox the caller does not own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from traitlets import Float
from traitlets.config import LoggingConfigurable

from ..base import ApiError


class FlowManager(LoggingConfigurable):
    poll_interval = Float(
        0.5, help="Seconds between two looks at the flow log for the websocket stream."
    ).tag(config=True)

    def _client(self) -> Any:
        from jupyter_openshell.proxy import ProxyClient

        return ProxyClient()

    def query(self, sandboxes: dict[str, float | None], after: int | None,
              limit: int) -> tuple[list[dict], int]:
        """(records, next cursor): records of `sandboxes` ({name: created}) in log order, the first `limit`
        with seq > `after` (None: the newest `limit`); pass the cursor as the next `after` to get only later
        records."""
        from jupyter_openshell.proxy import ProxyError

        if not sandboxes:
            return [], after or 0
        client = self._client()
        records: list[dict] = []
        cursors = []
        try:
            for name, created in sorted(sandboxes.items()):
                page = client.flow_page(sandbox=name, created=created, after=after, limit=limit)
                records += page["flows"]
                cursors.append(page["next_after"])
        except ProxyError as exc:
            raise ApiError(503, f"flow records are not available: {exc}") from None
        # every sandbox's answer is complete up to the smallest cursor: later records come next time
        cursor = min(cursors)
        records = sorted((r for r in records if r["seq"] <= cursor), key=lambda r: r["seq"])
        if after is None:
            return records[-limit:], cursor
        if len(records) >= limit:
            records = records[:limit]
            cursor = records[-1]["seq"]
        return records, max(cursor, after)

    async def follow(self, allowed: Callable[[], dict[str, float | None]],
                     after: int | None) -> AsyncIterator[list[dict]]:
        """Yield batches of records of the sandboxes `allowed()` returns, with seq > `after` (None: the
        newest first), as they are logged."""
        while True:
            batch, after = await asyncio.to_thread(self.query, allowed(), after, 1000)
            if batch:
                yield batch
                if len(batch) == 1000:
                    continue
            await asyncio.sleep(self.poll_interval)
