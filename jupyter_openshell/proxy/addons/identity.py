"""Identity by credential (channel kind "token"): binds a TCP connection to the sandbox whose credential it
presents from that sandbox's registered source address, before anything decides or forwards.

Sandboxes that reach the proxy over a network (Kubernetes pods) send `Proxy-Authorization` (`Basic` with
user `openshell` and the credential as password, as clients derive it from
`HTTP_PROXY=http://openshell:TOKEN@proxy:3128`, or `Bearer TOKEN`). On the FIRST request of a client
connection (a CONNECT, or a plain request):
* no header: the connection stays what it was (the host caller, or the sandbox whose UNIX channel it came
  through); a TCP connection whose socket another local user owns (neither the proxy's user nor root,
  looked up in the kernel's socket table on arrival, `_peer.py`) is no one's: every request refused; a
  connection that came through a UNIX channel keeps that identity whatever it sends (its
  header is only removed);
* a credential whose SHA-256 is registered AND whose registered source equals the connection's peer IP
  binds the connection to that sandbox (`state.channels[client.id]`), for every later request on it
  (inside a tunnel too);
* anything else (unknown credential, right credential from another address, another scheme or user,
  several headers) is refused: 407 JSON, logged as a flow record (rule "identity"), and the connection
  is refused from then on.
On every later request a header that does not name the connection's own sandbox is refused the same way:
identity is fixed when a connection starts and never switches. The header is removed from every request
before anything is forwarded. It must never log or answer a credential, and never bind a connection by
its address alone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import time

from mitmproxy import connection, http

from .._peer import peer_uid
from .._registry import SandboxEntry, normalize_source
from .._responses import json_response
from .._state import META_DENIED, META_RULE, META_START, META_TARGET, ProxyState

HEADER = "proxy-authorization"
BASIC_USER = "openshell"
RULE = "identity"


def credential(value: str) -> str | None:
    """The credential in one Proxy-Authorization value (Basic openshell:TOKEN, or Bearer TOKEN)."""
    scheme, _, rest = value.strip().partition(" ")
    rest = rest.strip()
    if scheme.lower() == "bearer":
        return rest or None
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, token = base64.b64decode(rest, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return token if sep and user == BASIC_USER and token else None


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Identity:
    def __init__(self, state: ProxyState):
        self.state = state
        self._started: set[str] = set()  # client connections whose first request was seen
        self._refused: set[str] = set()  # client connections refused for their credential

    def http_connect(self, flow: http.HTTPFlow) -> None:
        self._identify(flow)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self._identify(flow)

    def client_connected(self, client: connection.Client) -> None:
        """A TCP connection (not a sandbox's channel) from another local user than the proxy's own (or
        root) is no host caller: marked foreign until a registered credential binds it."""
        if client.id in self.state.channels:
            return
        uid = peer_uid(client.peername, client.sockname)
        if uid not in (os.getuid(), 0):
            self.state.foreign[client.id] = uid

    def client_disconnected(self, client: connection.Client) -> None:
        self._started.discard(client.id)
        self._refused.discard(client.id)
        self.state.foreign.pop(client.id, None)

    def _identify(self, flow: http.HTTPFlow) -> None:
        headers = flow.request.headers
        values = headers.get_all(HEADER)
        if values:
            del headers[HEADER]  # never forwarded, whatever follows
        client_id = flow.client_conn.id
        if client_id in self._refused:
            self._refuse(flow, "this connection presented a credential that was refused; open a new one")
            return
        first = client_id not in self._started
        self._started.add(client_id)
        if not values:
            return
        bound = self.state.channels.get(client_id)
        if bound is not None and bound.kind == "unix":
            return  # its UNIX channel says who it is: a proxy credential it sends is only removed
        entry, why = self._lookup(flow, values)
        if entry is None:
            self._refuse(flow, why)
        elif bound is not None and bound != entry:
            self._refuse(flow, "this connection belongs to another sandbox; a credential cannot change that")
        elif bound is None and not first:
            self._refuse(flow, "a connection's identity is fixed by its first request; send the credential "
                               "on the first request of a new connection")
        elif bound is None:
            self.state.channels[client_id] = entry

    def _lookup(self, flow: http.HTTPFlow, values: list[str]) -> tuple[SandboxEntry | None, str]:
        if len(values) > 1:
            return None, "more than one Proxy-Authorization header"
        token = credential(values[0])
        if token is None:
            return None, f"Proxy-Authorization must be Basic (user {BASIC_USER!r}) or Bearer"
        entry = self.state.registry.by_token(token_sha256(token))
        if entry is None:
            return None, "the credential is not registered"
        peer = flow.client_conn.peername
        try:
            source = normalize_source(peer[0]) if peer else None
        except ValueError:
            source = None
        if source is None or source != entry.source:
            return None, "the credential is not valid from this address"
        return entry, ""

    def _refuse(self, flow: http.HTTPFlow, reason: str) -> None:
        client_id = flow.client_conn.id
        self._refused.add(client_id)
        self.state.channels.pop(client_id, None)
        req = flow.request
        req.stream = False
        flow.metadata.setdefault(META_START, time.monotonic())
        flow.metadata[META_DENIED] = f"proxy authentication failed: {reason}"
        flow.metadata[META_RULE] = RULE
        flow.metadata.setdefault(META_TARGET, (req.scheme, req.host, req.port,
                                               "" if req.method == "CONNECT" else req.path.split("?", 1)[0]))
        flow.response = json_response(
            407,
            {"error": f"proxy authentication failed: {reason}", "method": req.method, "host": req.host,
             "rule": RULE},
            f"Proxy Authentication Required: {reason}",
            {"Proxy-Authenticate": 'Basic realm="openshell", charset="UTF-8"', "Connection": "close",
             "X-OpenShell-Denied": "proxy authentication failed", "X-OpenShell-Rule": RULE},
        )
