"""The proxy's own answers, all JSON: 403 for a denial, 400 for a request that cannot be evaluated,
413/414/431 for a request over a size limit, 502/504 for an allowed request that failed upstream.

A denial also carries its reason in the status line's reason phrase and in `X-OpenShell-Denied` /
`X-OpenShell-Rule` headers, because some clients show nothing else: a refused CONNECT's body is never
shown by curl, requests, httpx or pip, but the reason phrase is (`Tunnel connection failed: 403 ...`).
An upstream failure says `"error": "upstream-failure"` (and `X-OpenShell-Error: upstream-failure`) so
that nothing takes it for a denial.
They must never contain a secret, a caller's header value or a request body.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mitmproxy import http

from ._limits import refusal

_UNSAFE = re.compile(r"[^\x20-\x7e]")
UPSTREAM_FAILURE = "upstream-failure"


def _line(text: str, limit: int = 200) -> str:
    """`text` as printable ASCII of at most `limit` characters: safe in a status line or header value."""
    text = _UNSAFE.sub("?", text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def json_response(status: int, body: dict[str, Any], phrase: str | None = None,
                  headers: dict[str, str] | None = None) -> http.Response:
    resp = http.Response.make(
        status,
        json.dumps(body, separators=(",", ":")).encode(),
        {"Content-Type": "application/json", "Cache-Control": "no-store", "X-OpenShell-Proxy": "1",
         **(headers or {})},
    )
    if phrase:
        resp.reason = _line(phrase)
    return resp


def _denial_headers(reason: str, rule: str) -> dict[str, str]:
    return {"X-OpenShell-Denied": _line(reason), "X-OpenShell-Rule": _line(rule)}


def denied(method: str, host: str, path: str, version: str | None, rule: str, reason: str,
           hint: str | None) -> http.Response:
    return json_response(403, {
        "error": f"blocked by policy: {reason}",
        "method": method,
        "host": host,
        "path": path,
        "policy_version": version,
        "rule": rule,
        "hint": hint,
    }, f"Blocked by OpenShell policy: {reason}", _denial_headers(reason, rule))


def bad_request(message: str, version: str | None = None) -> http.Response:
    return json_response(400, {"error": f"bad request: {message}", "policy_version": version},
                         f"Bad Request: {message}")


def too_large(limit: str, max_bytes: int, *, method: str, host: str, path: str, version: str | None,
              close: bool = False) -> http.Response:
    """413 (body), 414 (request line) or 431 (headers): the request is over the proxy's `limit`."""
    status, message, hint = refusal(limit, max_bytes)
    headers = _denial_headers(message, "limits")
    if close:
        headers["Connection"] = "close"
    return json_response(status, {
        "error": f"request too large: {message}",
        "limit": limit,
        "max_bytes": max_bytes,
        "method": method,
        "host": host,
        "path": path,
        "policy_version": version,
        "rule": "limits",
        "hint": hint,
    }, f"Request too large: {message}", headers)


def upstream_failure(status: int, reason: str, *, method: str, host: str, port: int | None, path: str,
                     version: str | None, rule: str, close: bool = False) -> http.Response:
    """502 (or 504 for a timeout): the policy allowed the request, the destination failed it."""
    headers = {"X-OpenShell-Error": UPSTREAM_FAILURE}
    if close:
        headers["Connection"] = "close"
    return json_response(status, {
        "error": UPSTREAM_FAILURE,
        "status": status,
        "reason": reason,
        "method": method,
        "host": host,
        "port": port,
        "path": path,
        "policy_version": version,
        "rule": rule,
    }, f"Upstream failure: {reason}", headers)
