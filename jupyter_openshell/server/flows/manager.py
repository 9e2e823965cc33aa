"""Flow records for the REST API: cursor paging and a live tail, limited to the caller's sandboxes.

The cursor is the proxy's own `seq` (numbered by the proxy in log order, continued across proxy restarts
and rotated log files), so a client's `after=<seq>` stays valid when this server restarts. Each owned
sandbox is read through `jupyter_openshell.services.flows` for its current instance only (its `created`): an
earlier sandbox of the same name, maybe someone else's, is never shown. It must never return a record of a
sandbox the caller does not own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from traitlets import Float
from traitlets.config import LoggingConfigurable

from ..base import ApiError


class FlowManager(LoggingConfigurable):
    poll_interval = Float(
        0.5, help="Seconds between two looks at the flow log for the websocket stream."
    ).tag(config=True)

    def query(self, sandboxes: dict[str, float | None], after: int | None,
              limit: int) -> tuple[list[dict], int]:
        """(records, next cursor) of `sandboxes` ({name: created}): `services.flows.query`; 503 when the
        proxy cannot answer."""
        from jupyter_openshell.services.flows import FlowsUnavailable, query

        try:
            return query(sandboxes, after, limit)
        except FlowsUnavailable as exc:
            raise ApiError(503, str(exc)) from None

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
