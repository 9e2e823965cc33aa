"""A background refresh loop for widgets: calls `refresh()` every `interval` seconds until stopped.

Updating widget traits from a thread is supported by ipykernel (comm messages go through the IOPub thread),
so widgets keep updating while a cell runs. It must never let an exception kill the loop silently.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Poller:
    def __init__(self, refresh: Callable[[], None], interval: float, on_error: Callable[[Exception], None]):
        self._refresh, self.interval, self._on_error = refresh, interval, on_error
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="openshell-widget", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._refresh()
            except Exception as exc:
                self._on_error(exc)

    def stop(self) -> None:
        self._stop.set()
