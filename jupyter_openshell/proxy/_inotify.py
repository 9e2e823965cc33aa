"""Linux inotify through ctypes: wake the policy watcher the moment a watched directory changes.

Only a latency optimisation: the watcher also polls, so anything this misses (other OS, a full
queue, a failed watch) is still picked up. It must never raise into the event loop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable

log = logging.getLogger(__name__)
IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x2, 0x4, 0x8, 0x80, 0x100, 0x200
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000
_MASK = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE


class DirWatcher:
    """Calls `on_change()` (from the event loop) whenever a file in a watched directory changes."""

    def __init__(self, loop, on_change: Callable[[], None]):
        self._loop = loop
        self._on_change = on_change
        self._dirs: set[str] = set()
        self._fd = -1
        try:
            self._libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        except (OSError, AttributeError):
            return
        if fd < 0:
            return
        self._fd = fd
        loop.add_reader(fd, self._readable)

    def watch(self, directory: str) -> None:
        if self._fd < 0 or directory in self._dirs:
            return
        if self._libc.inotify_add_watch(self._fd, os.fsencode(directory), _MASK) >= 0:
            self._dirs.add(directory)

    def _readable(self) -> None:
        try:
            while os.read(self._fd, 65536):
                pass
        except BlockingIOError:
            pass
        except OSError:
            return
        try:
            self._on_change()
        except Exception:
            log.exception("policy change handler failed")

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
