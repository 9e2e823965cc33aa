"""The proxy's own answers: JSON 403 for a denial, 400 for a request that cannot be evaluated,
502 for a route that cannot be served. Bodies carry no header values, queries or secrets.
They must never contain a secret, a caller's header value or a request body.
"""

from __future__ import annotations

import json
from typing import Any

from mitmproxy import http


def json_response(status: int, body: dict[str, Any]) -> http.Response:
    return http.Response.make(
        status,
        json.dumps(body, separators=(",", ":")).encode(),
        {"Content-Type": "application/json", "Cache-Control": "no-store", "X-OpenShell-Proxy": "1"},
    )


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
    })


def bad_request(message: str, version: str | None = None) -> http.Response:
    return json_response(400, {"error": f"bad request: {message}", "policy_version": version})
