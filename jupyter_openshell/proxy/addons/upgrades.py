"""Protocol upgrades: a judged connection never turns into a raw pipe.

* Requests: an upgrade is forwarded only as `Upgrade: websocket` on a GET the policy allowed (never on an
  inference route). Every other upgrade (h2c in any case, inside a token list, TLS/1.x, ...) is removed
  with `HTTP2-Settings` and the `upgrade` / `http2-settings` tokens of `Connection`.
* Responses: mitmproxy turns any 101 that is not a WebSocket handshake into a raw TCP pipe, through
  which later requests would reach the upstream with no decision and no record. A 101 that does not
  answer a WebSocket upgrade this addon forwarded (an unsolicited 101 included) is replaced by a 502
  upstream failure, and an HTTP/1 client's connection is closed, so nothing rides the upstream's
  switched connection. After an allowed WebSocket handshake mitmproxy's WebSocket layer relays only
  WebSocket frames, and the handshake's flow record is written (response hook) before the first one.
It must never let a 101 through for a request it did not forward a WebSocket upgrade for.
"""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.flow import Error

from .._state import META_ROUTE
from .upstream import answer

META_WEBSOCKET = "openshell.websocket"
_DROP_TOKENS = frozenset(("upgrade", "http2-settings"))


def _tokens(values: list[str]) -> list[str]:
    return [t.strip().lower() for v in values for t in v.split(",") if t.strip()]


def _upgrading(fields: tuple[tuple[bytes, bytes], ...]) -> bool:
    """Does the request ask for an upgrade at all (the usual answer, no, in one cheap pass)?"""
    for name, value in fields:
        n = len(name)
        if n == 7 or n == 14:
            if name.lower() in (b"upgrade", b"http2-settings"):
                return True
        elif n == 10 and name.lower() == b"connection":
            low = value.lower()
            if b"upgrade" in low or b"http2-settings" in low:
                return True
    return False


class UpgradeGuard:
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        req = flow.request
        if not _upgrading(req.data.headers.fields):
            return
        headers = req.headers
        websocket = ("websocket" in _tokens(headers.get_all("upgrade")) and req.method == "GET"
                     and META_ROUTE not in flow.metadata)
        headers.pop("http2-settings", None)
        if websocket:
            headers["Upgrade"] = "websocket"
            flow.metadata[META_WEBSOCKET] = True
            return
        headers.pop("upgrade", None)
        tokens = _tokens(headers.get_all("connection"))
        kept = [t for t in tokens if t not in _DROP_TOKENS]
        if len(kept) != len(tokens):
            if kept:
                headers["Connection"] = ", ".join(kept)
            else:
                headers.pop("connection")

    def response(self, flow: http.HTTPFlow) -> None:
        resp = flow.response
        if resp is None or resp.status_code != 101:
            return
        if flow.metadata.get(META_WEBSOCKET) and flow.websocket is not None:
            return  # a WebSocket handshake we forwarded: mitmproxy relays WebSocket frames only
        reason = ("the upstream switched protocols (101) without an allowed WebSocket upgrade; "
                  "the connection was closed")
        flow.websocket = None
        flow.error = Error(reason)
        answer(flow, reason, close=flow.request.http_version.startswith("HTTP/1"))
