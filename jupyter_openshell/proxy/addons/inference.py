"""Inference routing: a request that matches an inference route goes to the route's backend with the
caller's credentials removed and exactly one backend credential injected from the secret store.

* The destination (scheme, host, port, base path) comes from the route, never from the request.
* One forwarding allowlist on every route: only the non-credential headers of `FORWARD_HEADERS` pass,
  plus the route's own credential slot (Authorization for `bearer`, `auth.header`, `auth.param`), which
  holds the injected key; on a route without `auth` and with `strip_caller_auth: false` the caller's
  own `Authorization` passes there. Any other header (x_api_key, Ocp-Apim-Subscription-Key, Cookie,
  Proxy-Authorization, ...) is dropped whatever its spelling, and so is every query parameter whose
  name looks like a credential (`credential_param`) or is the route's `auth.param`.
* Upgrades are never forwarded on a route; a 101 from the backend is answered 502.
* When a key was injected, the key is scrubbed (`_scrub`) from every response header, trailer and
  body, in every spelling that module knows, whatever the framing (Content-Length, chunked, SSE,
  close-delimited) and size: a body without a small Content-Length is streamed through the scrubber,
  a compressed body (Content-Encoding or Transfer-Encoding gzip, deflate, br, zstd) is decoded first
  and passed on decoded; a coding that cannot be decoded is refused with a 502 JSON error. The backend
  is asked for identity encoding. Redirects are returned to the caller, not followed.
It must never log, store or return the credential.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from urllib.parse import quote

from mitmproxy import flow as mflow
from mitmproxy import http
from mitmproxy.net.http.http1.read import expected_http_body_size

from jupyter_openshell.policy import BadRequest, parse_query

from .._codings import CodingError, UnsupportedCoding, decoder_for
from .._responses import bad_request, json_response
from .._scrub import Scrubber, scrub
from .._secrets import SecretError
from .._state import META_DENIED, META_ROUTE, ProxyState

log = logging.getLogger(__name__)
META_SECRET = "openshell.secret"
META_REFUSED = "openshell.refused"
BUFFER_LIMIT = 256 * 1024  # a body with a Content-Length up to this is scrubbed whole, else streamed

FORWARD_HEADERS = frozenset({
    "accept", "accept-language", "content-type", "content-length", "content-encoding",
    "transfer-encoding", "user-agent", "idempotency-key", "x-request-id", "traceparent", "tracestate",
    "openai-beta", "openai-organization", "openai-project", "anthropic-version", "anthropic-beta",
    "x-stainless-lang", "x-stainless-package-version", "x-stainless-os", "x-stainless-arch",
    "x-stainless-runtime", "x-stainless-runtime-version", "x-stainless-async", "x-stainless-retry-count",
    "x-stainless-read-timeout", "x-stainless-timeout", "expect", "te",
})
"""Caller headers that may reach a backend (lower case). Nothing that can carry a credential."""

_CREDENTIAL_WORDS = re.compile(
    r"key|token(?!s$)|secret|passw|pwd|auth|credential|signature|session|cookie|bearer|jwt|^sig$|^code$")
_PAGINATION = re.compile(r"^(?:page|next|continuation|cursor|sync|resume)tokens?$")


def credential_param(name: str) -> bool:
    """Does a query parameter name look like a credential? Case, digits and separators do not count
    (`API-Key`, `x_api_key`, `apiKey2`, `access.token`); pagination tokens (`pageToken`) are not."""
    letters = re.sub(r"[^a-z]", "", name.lower())
    return bool(_CREDENTIAL_WORDS.search(letters)) and not _PAGINATION.match(letters)


def _slot(route) -> tuple[str | None, str | None]:
    """(header, query parameter) of the route's credential, lower-case header name."""
    auth = route.backend.auth
    if auth is None:
        return ("authorization", None) if not route.strip_caller_auth else (None, None)
    if auth.type == "bearer":
        return "authorization", None
    if auth.type == "header":
        return (auth.header or "x-api-key").lower(), None
    return None, auth.param or "key"


def _scrubbed(headers: http.Headers, secret: bytes) -> http.Headers:
    return http.Headers([(scrub(k, secret), scrub(v, secret)) for k, v in headers.fields])


def _refuse(flow: http.HTTPFlow, message: str) -> None:
    """Answer the proxy's 502 JSON instead of the backend's response, whose headers were not sent yet:
    its body is read and dropped (streamed away), and `response` puts the answer in place."""
    resp = flow.response
    assert resp is not None
    flow.metadata[META_REFUSED] = message
    answer = json_response(502, {"error": message})
    body = answer.raw_content or b""
    resp.status_code, resp.reason = 502, "Bad Gateway"
    resp.headers = answer.headers
    resp.headers["content-length"] = str(len(body))
    resp.trailers = None
    resp.stream = lambda chunk: [] if chunk else [body]


class _ScrubbedBody:
    """The `stream` of a routed response: decode, scrub, pass on what is safe. A decoding error ends
    the body there (nothing undecoded is passed) and is recorded as the flow's error."""

    def __init__(self, flow: http.HTTPFlow, secret: bytes, decode: Callable[[bytes, bool], bytes] | None):
        self.flow = flow
        self.scrubber = Scrubber(secret)
        self.decode = decode
        self.failed = False

    def __call__(self, chunk: bytes) -> list[bytes]:
        """mitmproxy's stream protocol: b"" ends the body; an empty list sends nothing (an empty chunk
        would end a chunked body early)."""
        if self.failed:
            return []
        final = not chunk
        try:
            data = self.decode(chunk, final) if self.decode is not None else chunk
        except CodingError as exc:
            self.failed = True
            self.flow.error = mflow.Error(f"inference route: response body cut short: {exc}")
            log.warning("inference route %s: response body cut short: %s", self.flow.request.host, exc)
            return [out] if (out := self.scrubber.flush()) else []
        out = self.scrubber.feed(data)
        if final:
            out += self.scrubber.flush()
        return [out] if out else []


class InferenceRouter:
    def __init__(self, state: ProxyState):
        self.state = state

    # -- request: destination, caller credentials out, the route's credential in ------------------------
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        route = flow.metadata.get(META_ROUTE)
        if route is None or flow.response is not None:
            return
        auth = route.backend.auth
        secret = None
        if auth is not None:
            try:
                secret = self.state.secrets.get(auth.token_from_secret)
            except SecretError as exc:
                flow.request.stream = False
                flow.metadata[META_DENIED] = f"inference route cannot be served: {exc}"
                flow.response = json_response(502, {"error": f"inference route {route.describe()}: {exc}"})
                return
        req = flow.request
        path, _, query = req.data.path.decode("latin-1").partition("?")
        header_slot, param_slot = _slot(route)
        try:
            pairs = parse_query(query)
        except BadRequest as exc:
            flow.request.stream = False
            flow.metadata[META_DENIED] = f"bad request: {exc}"
            flow.response = bad_request(str(exc))
            return
        params = [(k, v) for k, v in pairs if not credential_param(k) and k.lower() != param_slot]
        if param_slot is not None and secret is not None:
            params.append((param_slot, secret))
        keep = [(k, v) for k, v in req.headers.fields if k.decode("latin-1").lower() in FORWARD_HEADERS]
        if header_slot is not None and secret is None:  # a route without auth: the caller's own credential
            keep += [(k, v) for k, v in req.headers.fields if k.decode("latin-1").lower() == header_slot]
        req.headers = http.Headers(keep)
        backend = route.backend
        req.scheme = backend.scheme
        req.data.host = backend.host
        req.port = backend.port
        new_query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)
        req.data.path = (route.target_path(path) + ("?" + new_query if new_query else "")).encode("latin-1")
        default = 443 if backend.scheme == "https" else 80
        host = f"[{backend.host}]" if ":" in backend.host else backend.host
        req.headers["Host"] = host if backend.port == default else f"{host}:{backend.port}"
        req.headers["Accept-Encoding"] = "identity"  # plain bodies; anything else is decoded or refused
        if secret is not None:
            if header_slot == "authorization":
                req.headers["Authorization"] = f"Bearer {secret}"
            elif header_slot is not None:
                req.headers[header_slot] = secret
            flow.metadata[META_SECRET] = secret.encode()

    # -- response: the key never goes back ---------------------------------------------------------------
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        resp = flow.response
        if resp is None or flow.metadata.get(META_ROUTE) is None:
            return
        if resp.status_code == 101:  # no upgrade is ever forwarded on a route: nothing may switch
            flow.metadata[META_DENIED] = "inference route: the backend switched protocols (101); closed"
            flow.kill()
            return
        secret = flow.metadata.get(META_SECRET)
        if secret is None:
            return
        resp.headers = _scrubbed(resp.headers, secret)
        try:
            size = expected_http_body_size(flow.request, resp)
        except ValueError:
            size = None
        if size == 0:
            return
        try:  # content codings were applied first, transfer codings after
            decode = decoder_for([*resp.headers.get_all("content-encoding"),
                                  *resp.headers.get_all("transfer-encoding")])
        except UnsupportedCoding as exc:
            _refuse(flow, f"inference route: the backend's {exc} cannot be checked for the key; refused")
            return
        if decode is None and size is not None and 0 < size <= BUFFER_LIMIT and not resp.stream:
            return  # scrubbed whole in `response`, Content-Length kept
        resp.stream = _ScrubbedBody(flow, secret, decode)
        for name in ("content-length", "content-encoding", "transfer-encoding"):
            resp.headers.pop(name, None)
        if resp.http_version == "HTTP/1.1":
            resp.headers["transfer-encoding"] = "chunked"

    def response(self, flow: http.HTTPFlow) -> None:
        secret = flow.metadata.get(META_SECRET)
        resp = flow.response
        if secret is None or resp is None:
            return
        if (refused := flow.metadata.get(META_REFUSED)) is not None:
            flow.response = json_response(502, {"error": refused})  # what was not streamed yet is sent
            return
        if resp.trailers:
            resp.trailers = _scrubbed(resp.trailers, secret)
        if resp.stream:
            return
        raw = resp.raw_content
        if raw and (scrubbed := scrub(raw, secret)) != raw:
            resp.content = scrubbed  # fixes Content-Length

    def error(self, flow: http.HTTPFlow) -> None:
        secret = flow.metadata.get(META_SECRET)
        if secret is not None and flow.error is not None:
            flow.error.msg = scrub(flow.error.msg.encode(), secret).decode("utf-8", "replace")
