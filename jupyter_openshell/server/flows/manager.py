"""Flow records for the REST API: paged queries and a live tail, limited to the caller's sandboxes.

It reads through `jupyter_openshell.proxy.ProxyClient.flows`; it must never return a record of a sandbox
the caller does not own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from traitlets import Float
from traitlets.config import LoggingConfigurable


class FlowManager(LoggingConfigurable):
    poll_interval = Float(
        0.5, help="Seconds between two looks at the flow log for the websocket stream."
    ).tag(config=True)

    def _client(self) -> Any:
        from jupyter_openshell.proxy import ProxyClient

        return ProxyClient()

    def query(self, sandboxes: set[str], since: float, limit: int) -> list[dict]:
        """Records of `sandboxes` newer than `since` (oldest first), at most `limit`."""
        client = self._client()
        records: list[dict] = []
        for name in sorted(sandboxes):
            records.extend(client.flows(sandbox=name, since=since, limit=limit))
        records.sort(key=lambda r: (r.get("ts", 0), str(r.get("id", ""))))
        return records[:limit]

    async def follow(self, allowed: Callable[[], set[str]], since: float) -> AsyncIterator[list[dict]]:
        """Yield batches of new records of the sandboxes `allowed()` returns, as they are logged."""
        seen: set[str] = set()
        while True:
            batch = await asyncio.to_thread(self.query, allowed(), since, 1000)
            fresh = [r for r in batch if str(r.get("id")) not in seen]
            if fresh:
                since = max(r.get("ts", since) for r in fresh)
                seen = {str(r.get("id")) for r in fresh if r.get("ts") == since}
                yield fresh
            await asyncio.sleep(self.poll_interval)
