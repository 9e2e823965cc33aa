"""One mitmproxy addon that runs our feature addons in order, and the lean master that hosts it.

mitmproxy pays per addon per event (its hook walk is most of its per-request cost), so our features
(each its own module under `addons/`) are chained behind a single addon, and the master loads only
the mitmproxy addons a policy proxy needs (no map_local, scripts, playback, save, ...). A feature
hook that returns an awaitable is awaited before the next feature runs. If a feature raises during a
flow hook the flow is killed: an unexpected error never lets a request through undecided.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from mitmproxy import hooks, master, options
from mitmproxy.addons import (
    block,
    core,
    disable_h2c,
    errorcheck,
    next_layer,
    proxyserver,
    tlsconfig,
)

log = logging.getLogger(__name__)


def _fail_closed(name: str, fn: Callable, args: tuple, exc: BaseException) -> None:
    log.error("%s in %s.%s failed; killing the flow", type(exc).__name__, type(fn.__self__).__name__, name,
              exc_info=exc)
    flow = args[0] if args else None
    if hasattr(flow, "kill") and getattr(flow, "killable", False):
        flow.kill()


async def _rest(name: str, pending: Any, fns: list[Callable], args: tuple) -> None:
    try:
        await pending
        for fn in fns:
            res = fn(*args)
            if res is not None and inspect.isawaitable(res):
                await res
    except Exception as exc:
        _fail_closed(name, fns[0] if fns else _rest, args, exc)


def _chain(name: str, fns: list[Callable]) -> Callable:
    def call(*args: Any) -> Any:
        for i, fn in enumerate(fns):
            try:
                res = fn(*args)
            except Exception as exc:
                _fail_closed(name, fn, args, exc)
                return None
            if res is not None and inspect.isawaitable(res):
                return _rest(name, res, fns[i + 1:], args)
        return None

    return call


class Pipeline:
    """A single mitmproxy addon calling `features` in order for every hook they define."""

    def __init__(self, features: list[Any]):
        self.features = features
        for name in hooks.all_hooks:
            fns = [fn for f in features if callable(fn := getattr(f, name, None))]
            if fns:
                setattr(self, name, _chain(name, fns))


def lean_master(opts: options.Options, pipeline: Pipeline) -> master.Master:
    """A mitmproxy master with only the addons a forward policy proxy needs, plus `pipeline`."""
    m = master.Master(opts)
    m.addons.add(
        core.Core(),
        block.Block(),
        disable_h2c.DisableH2C(),
        proxyserver.Proxyserver(),
        next_layer.NextLayer(),
        tlsconfig.TlsConfig(),
        errorcheck.ErrorCheck(),
        pipeline,
    )
    return m
