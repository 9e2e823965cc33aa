"""Hot reload: polls the policy files of every caller and swaps in valid new versions.

The poll interval (default 50 ms) bounds the apply-to-enforced time; a stat per file per tick is the
whole cost. Requests already holding a snapshot finish under it; the next request (also on a
kept-alive connection or inside a tunnel) takes the new one. It must never block the event loop on
anything but a local file read and compile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .._state import ProxyState

log = logging.getLogger(__name__)


class PolicyWatcher:
    def __init__(self, state: ProxyState, interval: float = 0.05):
        self.state = state
        self.interval = interval
        self._task: asyncio.Task | None = None

    def running(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.state.policies.refresh()
            except Exception:  # keep watching whatever happens
                log.exception("policy refresh failed")

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(Exception):
                self._task = None
