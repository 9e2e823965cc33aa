"""Hot reload: watches the policy files of every caller and swaps in valid new versions.

inotify on the files' directories wakes the watcher at once; a poll (default every 50 ms) backs it
up. A stat per file is the cost of a look. Requests already holding a snapshot finish under it; the
next request (also on a kept-alive connection or inside a tunnel) takes the new one. It must never
block the event loop on anything but a local file read and compile.
"""

from __future__ import annotations

import asyncio
import logging

from .._inotify import DirWatcher
from .._state import ProxyState

log = logging.getLogger(__name__)


class PolicyWatcher:
    def __init__(self, state: ProxyState, interval: float = 0.05):
        self.state = state
        self.interval = interval
        self._task: asyncio.Task | None = None
        self._inotify: DirWatcher | None = None

    def running(self) -> None:
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._inotify = DirWatcher(loop, self._refresh)
            self._task = loop.create_task(self._poll())

    def _refresh(self) -> None:
        try:
            self.state.policies.refresh()
        except Exception:  # keep watching whatever happens
            log.exception("policy refresh failed")
        if self._inotify is not None:
            for directory in self.state.policies.directories():
                self._inotify.watch(directory)

    async def _poll(self) -> None:
        while True:
            self._refresh()
            await asyncio.sleep(self.interval)

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
