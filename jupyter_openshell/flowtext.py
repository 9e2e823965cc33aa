"""How a proxy decision is put into words, shared by the CLI (`sandbox logs`, `sandbox flows`), the
denial notices of the magics and kernels, and the widgets: the URL of a flow record, the rule that
decided, denials grouped by request with a count, and the host-side command that allows one.

Pure functions on flow records (see docs/ARCHITECTURE.md); it must never import IPython, Jupyter or the
policy parser, and never print.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import NamedTuple

DEFAULT_DENY = "no rule matched (default deny)"


def url_of(record: dict) -> str:
    scheme = record.get("scheme") or "http"
    port = record.get("port")
    default = {"http": 80, "https": 443}.get(scheme)
    host = record.get("host") or "?"
    netloc = host if port in (None, default) else f"{host}:{port}"
    return f"{scheme}://{netloc}{record.get('path') or '/'}"


def rule_of(record: dict) -> str:
    return record.get("rule") or DEFAULT_DENY


def allow_request(method: str, url: str) -> tuple[str, str]:
    """What to allow for a denied METHOD URL: the request itself; for a refused CONNECT (the proxy never
    saw the requests inside the tunnel) a GET of the host's root: that opens the tunnel, and each request
    inside is then decided (and shown, with its own method and path, until allowed)."""
    if method.upper() != "CONNECT":
        return method, url
    scheme, _, rest = url.partition("://")
    return "GET", f"{scheme}://{rest.split('/', 1)[0]}/"


def host_allow_command(sandbox: str, method: str, url: str) -> str:
    """The command a host terminal runs to allow METHOD URL for `sandbox` (the narrowest rule)."""
    method, url = allow_request(method, url)
    return f"openshell sandbox allow {shlex.quote(sandbox)} {method} {shlex.quote(url)}"


class Denial(NamedTuple):
    """One distinct denied request (method + URL), its latest record and how often it was denied."""

    method: str
    url: str
    record: dict
    count: int


def group_denials(records: Iterable[dict]) -> list[Denial]:
    """The denials among `records`, one per method + URL, in order of first appearance, with counts."""
    groups: dict[tuple[str, str], Denial] = {}
    for record in records:
        if record.get("decision") != "deny":
            continue
        key = (record.get("method") or "GET", url_of(record))
        seen = groups.get(key)
        groups[key] = Denial(key[0], key[1], record, seen.count + 1 if seen else 1)
    return list(groups.values())


def times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"
