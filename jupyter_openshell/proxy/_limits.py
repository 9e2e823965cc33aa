"""Request size limits of the proxy: the defaults, and how a size is written in messages.

The request line (URL) and header limits are the proxy's (`openshell proxy --max-request-line`,
`--max-header-bytes`, `--max-header-count`); the body limit is the proxy's `--max-body`, which a
policy may replace for its callers with `network.limits.max_body`. Pure data; it must never do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

KiB = 1 << 10
MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    max_request_line: int = 16 * KiB  # the request line or URL (414)
    max_header_bytes: int = 64 * KiB  # the header section, names and values (431)
    max_header_count: int = 200  # header fields (431)
    max_body: int = 100 * MiB  # request body, counted as it streams (413)

    @property
    def head_cap(self) -> int:
        """Bytes of an unfinished HTTP/1 request head the proxy buffers before it refuses it."""
        return self.max_request_line + self.max_header_bytes + 4


def human(n: int) -> str:
    """`104857600` -> "100 MiB"; exact multiples only, else bytes."""
    for unit, size in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", KiB)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def refusal(limit: str, size: int) -> tuple[int, str, str]:
    """(status, message, hint) for a request over `limit` (a field name of `Limits`) of `size`."""
    if limit == "max_request_line":
        return 414, f"the request line or URL is longer than {human(size)}", \
            "use a shorter URL (or openshell proxy --max-request-line)"
    if limit == "max_header_count":
        return 431, f"more than {size} header fields", \
            "send fewer headers (or openshell proxy --max-header-count)"
    if limit == "max_header_bytes":
        return 431, f"the header section is larger than {human(size)}", \
            "send fewer or smaller headers (or openshell proxy --max-header-bytes)"
    return 413, f"the request body is larger than {human(size)}", \
        "raise network.limits.max_body in the policy (or openshell proxy --max-body)"
