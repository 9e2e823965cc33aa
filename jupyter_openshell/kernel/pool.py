"""Warm pool: kernel sandboxes started ahead of time so that a kernel start only hands one over.

One pool per `KernelConfig` (policy, workspace, backend, gpu, ...), filled in a background thread after the
first kernel of that config starts. Every pooled kernel has its own fresh key and is used by exactly one
kernel manager. It must never hand out a kernel started for another config, and `shutdown_pools()` (server
stop, interpreter exit) destroys every kernel still waiting.
"""

from __future__ import annotations

import atexit
import contextlib
import threading

from .session import KernelConfig, KernelSandbox

_lock = threading.Lock()
_pools: dict[str, _Pool] = {}


class _Pool:
    def __init__(self, config: KernelConfig, size: int):
        self.config, self.size = config, size
        self.ready: list[KernelSandbox] = []
        self.filling = False
        self.closed = False
        self.last_error = ""

    def fill(self) -> None:
        while True:
            with _lock:
                if self.closed or len(self.ready) >= self.size:
                    self.filling = False
                    return
            try:
                box = KernelSandbox.start(self.config)
            except Exception as exc:  # a broken config: stop trying, the next cold start reports it
                with _lock:
                    self.last_error, self.filling = str(exc), False
                return
            with _lock:
                if self.closed:
                    box_to_drop = box
                else:
                    self.ready.append(box)
                    box_to_drop = None
            if box_to_drop:
                box_to_drop.destroy()


def take(config: KernelConfig) -> KernelSandbox | None:
    """A ready kernel sandbox of this config, or None; the caller owns what it gets."""
    with _lock:
        pool = _pools.get(config.key())
        while pool and pool.ready:
            box = pool.ready.pop(0)
            if box.poll() is None:
                return box
            threading.Thread(target=box.destroy, daemon=True).start()
    return None


def refill(config: KernelConfig, size: int) -> None:
    """Start filling the pool of `config` up to `size` in the background (no-op if size is 0)."""
    if size <= 0:
        return
    with _lock:
        pool = _pools.setdefault(config.key(), _Pool(config, size))
        pool.size = size
        if pool.filling or pool.closed or len(pool.ready) >= size:
            return
        pool.filling = True
    threading.Thread(target=pool.fill, name="openshell-pool", daemon=True).start()


def pooled_count(config: KernelConfig) -> int:
    with _lock:
        pool = _pools.get(config.key())
        return len(pool.ready) if pool else 0


def shutdown_pools() -> None:
    """Destroy every waiting kernel sandbox (called on server stop and at interpreter exit)."""
    with _lock:
        boxes = [b for p in _pools.values() for b in p.ready]
        for pool in _pools.values():
            pool.closed = True
            pool.ready = []
        _pools.clear()
    for box in boxes:
        with contextlib.suppress(Exception):
            box.destroy()


atexit.register(shutdown_pools)
