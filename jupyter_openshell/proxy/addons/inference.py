"""Inference routing: a request that matches an inference route goes to the route's backend with the
caller's credentials removed and exactly one backend credential injected from the secret store.

* The destination (scheme, host, port, base path) comes from the route, never from the request.
* Only headers on `FORWARD_HEADERS` survive; every other header (Authorization, Proxy-Authorization,
  x-api-key, api-key, x-goog-api-key, Cookie, ...) is dropped, and credential query parameters too.
* The credential is scrubbed from every response header and body (streamed bodies included), so a
  backend that echoes it, or a redirect that carries it, never hands it to the caller; so are the
  percent-encoded spellings the proxy itself sends in a query (a backend echoing its URL). Redirects are
  returned to the caller, not followed; a follow-up request to another origin is a new request that
  gets no credential.
It must never log, store or return the credential.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote

from mitmproxy import http

from jupyter_openshell.policy import parse_query

from .._responses import json_response
from .._secrets import SecretError
from .._state import META_ROUTE, ProxyState

log = logging.getLogger(__name__)
META_SECRET = "openshell.secret"
REDACTED = b"[REDACTED]"

FORWARD_HEADERS = frozenset({
    "accept", "accept-encoding", "accept-language", "content-type", "content-length", "content-encoding",
    "transfer-encoding", "user-agent", "idempotency-key", "x-request-id", "traceparent", "tracestate",
    "openai-beta", "anthropic-version", "anthropic-beta", "x-stainless-lang", "x-stainless-package-version",
    "x-stainless-os", "x-stainless-arch", "x-stainless-runtime", "x-stainless-runtime-version",
    "x-stainless-async", "x-stainless-retry-count", "x-stainless-read-timeout", "x-stainless-timeout",
    "expect", "te",
})
CREDENTIAL_PARAMS = frozenset({
    "key", "api_key", "api-key", "apikey", "access_token", "token", "auth", "authorization",
    "x-api-key", "client_secret", "secret", "password", "sig", "signature", "code",
})


def spellings(secret: str) -> tuple[bytes, ...]:
    """The secret as it may come back: raw, and percent-encoded as a query value (either hex case)."""
    quoted = quote(secret, safe="")
    lower = re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quoted)
    return tuple(dict.fromkeys(s.encode() for s in (secret, quoted, lower)))


def _scrub(data: bytes, needles: tuple[bytes, ...]) -> bytes:
    for needle in needles:
        if needle in data:
            data = data.replace(needle, REDACTED)
    return data


class Scrubber:
    """Streaming replacement of a secret's spellings in response chunks (keeps a tail across chunk
    borders)."""

    def __init__(self, needles: tuple[bytes, ...]):
        self.needles = needles
        self._keep = max(len(n) for n in needles) - 1
        self._tail = b""

    def __call__(self, chunk: bytes) -> bytes:
        if not chunk:  # end of message
            out, self._tail = self._tail, b""
            return out
        data = _scrub(self._tail + chunk, self.needles)
        keep = self._keep
        if len(data) <= keep:
            self._tail = data
            return b""
        self._tail = data[len(data) - keep:]
        return data[:len(data) - keep]


def _scrub_text(text: str, secret: str) -> str:
    for needle in spellings(secret):
        text = text.replace(needle.decode(), REDACTED.decode())
    return text


class InferenceRouter:
    def __init__(self, state: ProxyState):
        self.state = state

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
                flow.metadata["openshell.denied"] = f"inference route cannot be served: {exc}"
                flow.response = json_response(502, {"error": f"inference route {route.describe()}: {exc}"})
                return
        req = flow.request
        backend = route.backend
        path, _, query = req.data.path.decode("latin-1").partition("?")
        params = [(k, v) for k, v in parse_query(query) if k.lower() not in CREDENTIAL_PARAMS]
        if auth is not None and auth.type == "query":
            params.append((auth.param or "key", secret or ""))
        new_query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)
        keep = [(k, v) for k, v in req.headers.fields if k.decode("latin-1").lower() in FORWARD_HEADERS]
        if not route.strip_caller_auth:
            # the route lets non-credential caller headers through; credentials are never forwarded
            keep = [(k, v) for k, v in req.headers.fields if k.lower() not in _CREDENTIAL_HEADERS]
        req.headers = http.Headers(keep)
        req.scheme = backend.scheme
        req.data.host = backend.host
        req.port = backend.port
        req.data.path = (route.target_path(path) + ("?" + new_query if new_query else "")).encode("latin-1")
        default = 443 if backend.scheme == "https" else 80
        host = f"[{backend.host}]" if ":" in backend.host else backend.host
        req.headers["Host"] = host if backend.port == default else f"{host}:{backend.port}"
        req.headers["Accept-Encoding"] = "identity"  # plain bodies, so the scrubber sees the bytes
        if auth is not None and secret is not None:
            if auth.type == "bearer":
                req.headers["Authorization"] = f"Bearer {secret}"
            elif auth.type == "header":
                req.headers[auth.header or "x-api-key"] = secret
            flow.metadata[META_SECRET] = secret

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        secret = flow.metadata.get(META_SECRET)
        if not secret or flow.response is None:
            return
        resp = flow.response
        needles = spellings(secret)
        resp.headers = http.Headers([(k, _scrub(v, needles)) for k, v in resp.headers.fields])
        if resp.stream:
            # scrubbing may change the length: frame the body by chunks instead
            resp.stream = Scrubber(needles)
            if resp.http_version == "HTTP/1.1":
                resp.headers.pop("content-length", None)
                resp.headers["transfer-encoding"] = "chunked"

    def response(self, flow: http.HTTPFlow) -> None:
        secret = flow.metadata.get(META_SECRET)
        resp = flow.response
        if not secret or resp is None or resp.stream:
            return
        needles = spellings(secret)
        if resp.headers.get("content-encoding"):
            decoded = resp.get_content(strict=False)
            if decoded and (scrubbed := _scrub(decoded, needles)) != decoded:
                resp.content = scrubbed  # re-encodes, fixes Content-Length
        raw = resp.raw_content
        if raw and (scrubbed := _scrub(raw, needles)) != raw:
            resp.headers.pop("content-encoding", None)
            resp.content = scrubbed

    def error(self, flow: http.HTTPFlow) -> None:
        secret = flow.metadata.get(META_SECRET)
        if secret and flow.error is not None:
            flow.error.msg = _scrub_text(flow.error.msg, secret)


_CREDENTIAL_HEADERS = frozenset({
    b"authorization", b"proxy-authorization", b"x-api-key", b"api-key", b"x-goog-api-key", b"cookie",
    b"cookie2", b"x-auth-token", b"x-amz-security-token", b"x-amz-date", b"x-amz-content-sha256",
})
