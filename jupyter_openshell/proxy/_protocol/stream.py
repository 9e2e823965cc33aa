"""HTTP stream fixes for mitmproxy 11.0.2 (`HttpStream` in `mitmproxy/proxy/layers/http/__init__.py`).

* Early answers: a request that an addon answered in `requestheaders` (a denial, a size limit) while its
  body is still to come is answered at once (without a "100 Continue" first), and the rest of its body
  is dropped as it arrives. mitmproxy buffered that body instead and raised NotImplementedError once it
  grew past the streaming threshold.
* Body limit: request body bytes are counted as they arrive, buffered or streamed; past the flow's
  `META_MAX_BODY` (set by `addons.limits` once the request is allowed) the upstream request is aborted
  and the client answered 413 (or, when the upstream already answered, the exchange cut). The body is
  never held in memory to find out: the count is kept while it streams.
* Answers on failure: when a request fails upstream before any response (DNS, connect, TLS, the
  upstream closing), the flow is marked `META_UPSTREAM_ERROR` before the `error` hook; an addon may set
  `flow.response` there, and that answer is sent instead of mitmproxy's HTML error page.
It must never send a byte of an answered request's body upstream.
"""

from __future__ import annotations

import time

import mitmproxy.proxy.layers.http as mhttp
from mitmproxy import flow as mflow
from mitmproxy.net.http import status_codes
from mitmproxy.proxy.layers.http._events import (
    RequestData,
    RequestHeaders,
    RequestProtocolError,
    ResponseData,
    ResponseEndOfMessage,
    ResponseHeaders,
    ResponseProtocolError,
)
from mitmproxy.proxy.layers.http._hooks import HttpErrorHook, HttpResponseHeadersHook

from .._limits import refusal
from .._responses import too_large
from .._state import META_DENIED, META_MAX_BODY, META_RULE, META_UPSTREAM_ERROR


def _rewritten(inner, rewrite):  # type: ignore[no-untyped-def]
    """Run the command generator `inner`, yielding `rewrite(command)` (a list of non-blocking commands)
    instead of each command for which it is not None; replies go back to `inner` as usual."""
    reply = None
    while True:
        try:
            command = inner.send(reply)
        except StopIteration:
            return
        instead = rewrite(command)
        if instead is None:
            reply = yield command
        else:
            yield from instead
            reply = None


class HttpStream(mhttp.HttpStream):
    streamed = 0  # request body bytes passed on while streaming

    # -- early answers --------------------------------------------------------------------------
    def state_wait_for_request_headers(self, event: RequestHeaders):  # type: ignore[no-untyped-def]
        yield from _rewritten(super().state_wait_for_request_headers(event), self._no_continue)
        if (self.flow.response is not None and not event.end_stream
                and self.client_state == self.state_consume_request_body):
            yield from self._answer_now()

    def _no_continue(self, command):  # type: ignore[no-untyped-def]
        """No "100 Continue" for a request that is answered already: its body is not wanted."""
        if (self.flow.response is not None and isinstance(command, mhttp.SendHttp)
                and isinstance(command.event, ResponseHeaders) and command.event.response.status_code == 100):
            return []
        return None

    def start_request_stream(self):  # type: ignore[no-untyped-def]
        if self.flow.response is not None:
            yield from self._answer_now()
            return
        yield from super().start_request_stream()

    def _answer_now(self):  # type: ignore[no-untyped-def]
        """Send the response an addon set while the request body is still to come; drop that body."""
        self.client_state = self.state_errored
        self.flow.request.stream = False
        self.flow.response.timestamp_start = time.time()
        yield HttpResponseHeadersHook(self.flow)
        if (yield from self.check_killed(True)):
            return
        yield from self.send_response()  # the `response` hook (recorded), then headers and body
        yield mhttp.SendHttp(ResponseEndOfMessage(self.stream_id), self.context.client)
        self.flow.live = False
        yield mhttp.DropStream(self.stream_id)  # the body's remaining events are dropped by HttpLayer

    # -- body limit -----------------------------------------------------------------------------
    def state_consume_request_body(self, event):  # type: ignore[no-untyped-def]
        if isinstance(event, RequestData):
            limit = self.flow.metadata.get(META_MAX_BODY)
            if limit is not None and len(self.request_body_buf) + len(event.data) > limit:
                yield from self._body_too_large(limit, upstream=False)
                return
        yield from super().state_consume_request_body(event)

    def state_stream_request_body(self, event):  # type: ignore[no-untyped-def]
        if isinstance(event, RequestData):
            limit = self.flow.metadata.get(META_MAX_BODY)
            if limit is not None:
                self.streamed += len(event.data)
                if self.streamed > limit:
                    yield from self._body_too_large(limit, upstream=True)
                    return
        yield from super().state_stream_request_body(event)

    def _body_too_large(self, limit: int, *, upstream: bool):  # type: ignore[no-untyped-def]
        message = refusal("max_body", limit)[1]
        if upstream:  # headers and part of the body went out: the upstream must not see a whole request
            yield mhttp.SendHttp(RequestProtocolError(self.stream_id, message, 413), self.context.server)
        self.flow.metadata[META_DENIED] = message
        self.flow.metadata[META_RULE] = "limits"
        req = self.flow.request
        if self.server_state == self.state_wait_for_response_headers:
            self.flow.response = too_large("max_body", limit, method=req.method, host=req.host,
                                           path=req.path.split("?", 1)[0], version=None,
                                           close=req.http_version.startswith("HTTP/1"))
            yield from self._answer_now()
            return
        self.flow.error = mflow.Error(message)  # the upstream answered already: cut the exchange
        yield HttpErrorHook(self.flow)
        yield mhttp.SendHttp(ResponseProtocolError(self.stream_id, message, status_codes.NO_RESPONSE),
                             self.context.client)
        self.client_state = self.server_state = self.state_errored
        self.flow.live = False
        yield mhttp.DropStream(self.stream_id)

    # -- answers on failure ---------------------------------------------------------------------
    def handle_protocol_error(self, event):  # type: ignore[no-untyped-def]
        answerable = (isinstance(event, ResponseProtocolError) and self.flow.response is None
                      and self.client_state != self.state_errored)
        if not answerable:
            yield from super().handle_protocol_error(event)
            return
        self.flow.metadata[META_UPSTREAM_ERROR] = True
        yield from _rewritten(super().handle_protocol_error(event), self._answer_instead)

    def _answer_instead(self, command):  # type: ignore[no-untyped-def]
        """The answer an `error` hook set, instead of mitmproxy's error page for the client."""
        if not (self.flow.response is not None and isinstance(command, mhttp.SendHttp)
                and isinstance(command.event, ResponseProtocolError)
                and command.connection is self.context.client):
            return None
        response = self.flow.response
        content = response.raw_content
        out = [mhttp.SendHttp(ResponseHeaders(self.stream_id, response, not content), self.context.client)]
        if content:
            out.append(mhttp.SendHttp(ResponseData(self.stream_id, content), self.context.client))
        out.append(mhttp.SendHttp(ResponseEndOfMessage(self.stream_id), self.context.client))
        return out
