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

from mitmproxy import addonmanager, exceptions, hooks, master, options
from mitmproxy import http as mitm_http
from mitmproxy.addons import (
    block,
    core,
    disable_h2c,
    errorcheck,
    next_layer,
    proxyserver,
    tlsconfig,
)
from mitmproxy.proxy.layers.http import HttpStream

from ._state import META_BODY_LIMIT, META_BODY_OVERFLOW

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


class _HookIndex(addonmanager.AddonManager):
    """mitmproxy's addon manager, minus its per-event walk: for every flow event it visits each addon
    (and again for the `update` event that follows), building a generator and a context manager per
    addon even where the addon has no handler. This one looks the handlers of a hook up once (the
    addon set is fixed once the proxy runs; adding or removing one clears the index) and calls exactly
    those, in the same order, each under mitmproxy's own `safecall`."""

    def __init__(self, m: master.Master):
        super().__init__(m)
        self._index: dict[str, list[Callable]] = {}

    def add(self, *addons: Any) -> None:
        self._index.clear()
        super().add(*addons)

    def remove(self, addon: Any) -> None:
        self._index.clear()
        super().remove(addon)

    def clear(self) -> None:
        self._index.clear()
        super().clear()

    async def trigger_event(self, event: hooks.Hook) -> None:
        funcs = self._index.get(event.name)
        if funcs is None:
            funcs = self._index[event.name] = [f for a in self.chain for _, f in self._iter_hooks(a, event)]
        args = event.args()
        for func in funcs:
            try:
                with addonmanager.safecall():
                    res = func(*args)
                    if res is not None and inspect.isawaitable(res):
                        await res
            except exceptions.AddonHalt:
                return


def _no_field_typecheck(self: Any) -> None:
    """Replaces `mitmproxy.http.MessageData.__post_init__`, which (only when Python runs without -O)
    type-checks every field of every request and response: ~30 checks per request, no protection
    (mitmproxy's parser and `Response.make` build these)."""


_check_body_size = HttpStream.check_body_size


def _bounded_request_bodies(self: HttpStream, request: bool) -> Any:
    """Replaces `HttpStream.check_body_size` for request bodies being received:
    * a request already answered (refused at `requestheaders`): its body is read and dropped, so it
      never grows past `stream_large_bodies`, where mitmproxy would switch to streaming it and crash
      ("Can't set a response and enable streaming at the same time"), leaving the client unanswered;
    * a request whose body an addon holds back to judge (`META_BODY_LIMIT`): buffered, never switched
      to streaming (which would send it upstream before the `request` hook); past the limit it is
      dropped and `META_BODY_OVERFLOW` set, for the `request` hook to answer.
    Anything else: mitmproxy's own check."""
    flow = self.flow
    if request and flow is not None and self.request_body_buf:
        meta = flow.metadata
        if flow.response is not None or meta.get(META_BODY_OVERFLOW):
            self.request_body_buf.clear()
            return False
        limit = meta.get(META_BODY_LIMIT)
        if limit is not None:
            if len(self.request_body_buf) > limit:
                meta[META_BODY_OVERFLOW] = True
                self.request_body_buf.clear()
            return False
    return (yield from _check_body_size(self, request))


def lean_master(opts: options.Options, pipeline: Pipeline) -> master.Master:
    """A mitmproxy master with only the addons a forward policy proxy needs, plus `pipeline`."""
    mitm_http.MessageData.__post_init__ = _no_field_typecheck  # type: ignore[method-assign]
    HttpStream.check_body_size = _bounded_request_bodies  # type: ignore[method-assign]
    m = master.Master(opts)
    m.addons = _HookIndex(m)
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
