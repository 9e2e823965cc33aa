"""Narrow fixes to mitmproxy 11.0.2's HTTP layers, where an addon hook cannot reach (see `h1`, `stream`).

`install(limits)` swaps our subclasses in for mitmproxy's `Http1Server`, `Http1Client` and `HttpStream`
(the names `HttpLayer` and `HttpClient` instantiate) and its chunked body reader; it is idempotent and
runs before the proxy serves. Each subclass overrides only the methods it fixes and calls mitmproxy's
for the rest. It must never change what a request is judged on, only how messages are framed, capped
and answered.
"""

from __future__ import annotations

import logging

import mitmproxy.proxy.layers.http as mhttp
from mitmproxy import version

from .._limits import Limits
from . import h1, stream

log = logging.getLogger(__name__)
WRITTEN_FOR = "11.0."  # the mitmproxy whose HTTP layer these subclasses were written against


def install(limits: Limits) -> None:
    if not version.VERSION.startswith(WRITTEN_FOR):
        log.warning("mitmproxy %s: the protocol fixes were written for %sx; run tests/proxy to check them",
                    version.VERSION, WRITTEN_FOR)
    h1.install(limits)
    mhttp.Http1Server = h1.Http1Server  # type: ignore[misc]
    mhttp.Http1Client = h1.Http1Client  # type: ignore[misc]
    mhttp.HttpStream = stream.HttpStream  # type: ignore[misc]
