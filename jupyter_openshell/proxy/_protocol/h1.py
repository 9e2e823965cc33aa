"""HTTP/1 connection fixes for mitmproxy 11.0.2 (`mitmproxy/proxy/layers/http/_http1.py`).

* Interim responses: mitmproxy's `Http1Client` takes any 1xx for the final response, so a 103 Early
  Hints (or a stray 100 Continue) became the answer, the real response behind it was lost and the
  connection desynchronised. Interim responses other than 101 are read and dropped (RFC 9110 15.2 lets
  a client ignore them; mitmproxy already does so for HTTP/2).
* Trailers: a chunked message with trailer fields raised NotImplementedError (the connection was torn
  down), and an HTTP/2 client's request trailers for an HTTP/1 upstream raised AssertionError. Trailer
  fields are dropped (RFC 9110 6.5.1 allows a recipient to discard them); the message ends normally.
  (An HTTP/1 client never gets an HTTP/2 upstream here: the upstream is offered the client's ALPN.)
* Framing: an HTTP/2 request may carry a body without a Content-Length; mitmproxy wrote it to an
  HTTP/1 upstream unframed, where it read as further requests that no rule judged (smuggling). Such a
  body is sent chunked. Bytes an upstream sends after a complete response while the request is still
  going out close the connection (mitmproxy took them for another response of the same stream).
* Buffering: mitmproxy buffers an HTTP/1 head until its blank line without any bound ("FIXME: protect
  against header size DoS"). An unfinished request head over `Limits.head_cap` is answered 414 (no line
  end within `max_request_line`) or 431, recorded (an `error` hook on a flow made for it, see
  `addons.limits`) and the connection closed (after what the client still sends, up to a bound); the
  same cap fails an upstream's response head (502), an
  endless chunk header or trailer section, and what a client sends while it waits for its response.
It must never forward a byte it has not parsed as part of a message that was judged.
"""

from __future__ import annotations

import re
import time
from logging import DEBUG, WARNING
from urllib.parse import urlsplit

import h11
from h11._readers import ChunkedReader
from mitmproxy import flow as mflow
from mitmproxy import http
from mitmproxy.net.http import http1, status_codes
from mitmproxy.proxy import commands, events
from mitmproxy.proxy.layers.http import _http1
from mitmproxy.proxy.layers.http._base import ReceiveHttp
from mitmproxy.proxy.layers.http._events import (
    RequestHeaders,
    RequestProtocolError,
    RequestTrailers,
    ResponseHeaders,
    ResponseProtocolError,
)
from mitmproxy.proxy.layers.http._hooks import HttpErrorHook

from .._limits import Limits, human, refusal
from .._responses import too_large
from .._state import META_DENIED, META_RULE

LIMITS = Limits()  # replaced by `install()`
WAIT_SLACK = 1 << 20  # a client may send this much of its next request while it waits for a response
DISCARD_MAX = 64 << 20  # bytes dropped after a refused head before the connection is closed anyway
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,20}\Z")


class _NoTrailersReader(ChunkedReader):
    """h11's chunked reader, minus trailer fields (which mitmproxy cannot handle)."""

    def __call__(self, buf):  # type: ignore[no-untyped-def]
        event = super().__call__(buf)
        if isinstance(event, h11.EndOfMessage) and event.headers:
            return h11.EndOfMessage()
        return event


_ORIGINAL_MAKE_BODY_READER = _http1.make_body_reader


def make_body_reader(expected_size: int | None) -> _http1.TBodyReader:
    return _NoTrailersReader() if expected_size is None else _ORIGINAL_MAKE_BODY_READER(expected_size)


class _Capped(_http1.Http1Connection):
    def read_body(self, event: events.Event):  # type: ignore[no-untyped-def]
        yield from super().read_body(event)
        if self.state == self.read_body and len(self.buf) > LIMITS.head_cap:
            yield commands.CloseConnection(self.conn)
            yield ReceiveHttp(self.ReceiveProtocolError(
                self.stream_id, "HTTP/1 protocol error: a chunk header or the trailer section is too long"))
            self.state = self.done


class Http1Server(_Capped, _http1.Http1Server):
    def read_headers(self, event: events.ConnectionEvent):  # type: ignore[no-untyped-def]
        yield from super().read_headers(event)
        if self.state == self.read_headers and len(self.buf) > LIMITS.head_cap:
            yield from self._refuse_head()

    def wait(self, event: events.Event):  # type: ignore[no-untyped-def]
        yield from super().wait(event)
        if len(self.buf) > LIMITS.head_cap + WAIT_SLACK:
            yield commands.CloseConnection(self.conn)
            yield ReceiveHttp(RequestProtocolError(
                self.stream_id, "client sent too much data while waiting for its response",
                code=status_codes.NO_RESPONSE))
            self.state = self.done

    def _refuse_head(self):  # type: ignore[no-untyped-def]
        head = bytes(self.buf)
        self.buf.maybe_extract_at_most(len(self.buf))  # free it
        line_end = head.find(b"\n")
        lim = LIMITS
        if line_end < 0 or line_end > lim.max_request_line + 1:
            limit, size = "max_request_line", lim.max_request_line
        else:
            limit, size = "max_header_bytes", lim.max_header_bytes
        message = refusal(limit, size)[1]
        flow = http.HTTPFlow(self.context.client, self.context.server)
        flow.request = _partial_request(head[:line_end if line_end >= 0 else 4096], self.context)
        flow.response = too_large(limit, size, method=flow.request.method, host=flow.request.host,
                                  path=flow.request.path, version=None, close=True)
        flow.error = mflow.Error(message)
        flow.metadata[META_DENIED] = message
        flow.metadata[META_RULE] = "limits"
        flow.live = False
        self.state = self.discard
        self.discarded = 0
        yield HttpErrorHook(flow)  # recorded before it is answered
        yield commands.SendData(self.conn, http1.assemble_response(flow.response))
        # Half-close and drop what the client still sends: closing with unread data would reset the
        # connection, and the client could lose the answer.
        yield commands.CloseTcpConnection(self.conn, half_close=True)

    def discard(self, event: events.Event):  # type: ignore[no-untyped-def]
        """After a refusal: drop whatever arrives (up to DISCARD_MAX bytes), then close."""
        self.discarded += len(self.buf)
        self.buf.maybe_extract_at_most(len(self.buf))
        if isinstance(event, events.ConnectionClosed) or self.discarded > DISCARD_MAX:
            yield commands.CloseConnection(self.conn)
            self.state = self.done


def _partial_request(line: bytes, context) -> http.Request:  # type: ignore[no-untyped-def]
    """What can be told of a refused request from the start of its request line (for the flow record):
    the method, the destination (the tunnel's, else an absolute-form target's) and a short path."""
    parts = line.split(b" ", 2)
    method = parts[0] if _TOKEN.match(parts[0]) else b"?"
    target = (parts[1] if len(parts) > 1 else b"").decode("latin-1")
    scheme, host, port = "https" if context.client.tls else "http", "", 0
    if context.server.address:
        host, port = context.server.address
    elif re.match(r"https?://", target, re.I):
        try:
            url = urlsplit(target)
            scheme = url.scheme.lower()
            host, port, target = url.hostname or "", url.port or (443 if scheme == "https" else 80), url.path
        except ValueError:  # a malformed authority: no destination to tell
            target = ""
    path = target.split("?", 1)[0][:256] or "/"
    return http.Request(host, port, method, scheme.encode(), b"", path.encode("latin-1"), b"HTTP/1.1",
                        http.Headers(), None, None, time.time(), None)


class Http1Client(_Capped, _http1.Http1Client):
    def send(self, event):  # type: ignore[no-untyped-def]
        if isinstance(event, RequestTrailers):
            return
        if isinstance(event, RequestHeaders) and not event.end_stream:
            headers = event.request.headers
            if "content-length" not in headers and "transfer-encoding" not in headers:
                # An HTTP/2 request body need not state its length; unframed, an HTTP/1 upstream would
                # read it as the next request(s), which no rule judged.
                headers["transfer-encoding"] = "chunked"
        yield from super().send(event)

    def read_body(self, event: events.Event):  # type: ignore[no-untyped-def]
        if self.response_done and isinstance(event, events.DataReceived):
            # More bytes after a complete response while the request is still being sent: a second
            # response nobody asked for. mitmproxy would take it for this stream's and crash.
            extra = bytes(self.buf)[:64]
            yield commands.Log(f"unexpected data from the server after its response: {extra!r}", WARNING)
            yield commands.CloseConnection(self.conn)
            self.state = self.done
            return
        yield from super().read_body(event)

    def read_headers(self, event: events.ConnectionEvent):  # type: ignore[no-untyped-def]
        """mitmproxy's, plus: interim (1xx but 101) responses are dropped, the head's size is capped."""
        if not isinstance(event, events.DataReceived) or not self.request:
            yield from super().read_headers(event)
            return
        assert self.stream_id is not None
        while True:
            head = self.buf.maybe_extract_lines()
            if head is None:
                if len(self.buf) > LIMITS.head_cap:
                    yield commands.CloseConnection(self.conn)
                    yield ReceiveHttp(ResponseProtocolError(
                        self.stream_id, f"upstream response head larger than {human(LIMITS.head_cap)}"))
                    self.state = self.done
                return
            try:
                response = http1.read_response_head([bytes(x) for x in head])
                if 100 <= response.status_code < 200 and response.status_code != 101:
                    yield commands.Log(f"dropped an interim response: {response.status_code}", DEBUG)
                    continue
                self.response = response
                expected_size = http1.expected_http_body_size(self.request, self.response)
            except ValueError as e:
                yield commands.CloseConnection(self.conn)
                yield ReceiveHttp(ResponseProtocolError(self.stream_id, f"Cannot parse HTTP response: {e}"))
                return
            yield ReceiveHttp(ResponseHeaders(self.stream_id, self.response, expected_size == 0))
            self.body_reader = make_body_reader(expected_size)
            self.state = self.read_body
            yield from self.state(event)
            return


def install(limits: Limits) -> None:
    global LIMITS
    LIMITS = limits
    _http1.make_body_reader = make_body_reader
