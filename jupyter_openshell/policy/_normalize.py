"""Canonical forms of request hosts, paths, methods and queries, so that matching cannot be fooled.

The bytes that are evaluated are the bytes that are forwarded: the proxy forwards the normalised
path and host this module returns. Anything ambiguous raises `BadRequest` (answer 400).

Decisions, documented here because the matcher relies on them:

* Hosts: lower-cased, IDNA-encoded (nameprep maps full-width letters, digits and dots), exactly one
  trailing dot stripped. A name whose last label is numeric is parsed as IPv4 the way `inet_aton`
  and browsers do (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`); if that fails the host is
  rejected. IPv4-mapped IPv6 (`::ffff:127.0.0.1`) is the IPv4 address. IPs are never names.
* Paths: every `%XX` is decoded; unreserved characters stay decoded, everything else is re-encoded
  with upper-case hex. Encoded `\\`, raw `\\`, control characters (NUL included), a `#`, invalid `%`
  escapes and invalid or overlong UTF-8 are rejected. Dot segments are resolved (never above the
  root) and repeated slashes are merged. An encoded `/` stays `%2F` (npm's `@scope%2Fname`), unless
  reading it as `/` would make an empty or dot segment (then it is rejected).
* `;params` stay in the path (they are forwarded), but a dot segment carrying parameters (`..;x`)
  is rejected, and `strip_params()` gives the form servers such as Tomcat route on.
* `path_forms()` lists the other ways a server may read a normalised path: the matcher allows a
  request only if every form that keeps its meaning (without `;params`, `%2F` as `/`) is allowed, and
  matches deny rules (case-insensitively) against those plus the fully decoded form (double
  encoding, full-width and other compatibility characters, trailing dots and spaces of segments).
* Methods are exact upper-case tokens; method-override headers and `_method` parameters are
  reported by `override_methods()` so the decision can require those methods too.

This module is pure: it must never do I/O, DNS lookups, or accept something it cannot parse.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from ._errors import BadRequest

DEFAULT_PORTS: tuple[int, ...] = (80, 443)  # the ports of a rule that names none (and of http/https URLs)

__all__ = [
    "OVERRIDE_HEADERS",
    "OVERRIDE_PARAMS",
    "HostInfo",
    "is_override_param",
    "normalize_host",
    "normalize_method",
    "normalize_path",
    "override_methods",
    "parse_query",
    "path_forms",
    "same_authority",
    "split_host_port",
    "strip_params",
]


class HostInfo(NamedTuple):
    """A normalised host. `kind` is "name", "ipv4" or "ipv6"; `value` has no brackets."""

    kind: str
    value: str

    @property
    def is_ip(self) -> bool:
        return self.kind != "name"

    @property
    def url_host(self) -> str:
        """The form to put in a URL or Host header (IPv6 in brackets)."""
        return f"[{self.value}]" if self.kind == "ipv6" else self.value

    def __str__(self) -> str:
        return self.value


_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
_NUMERIC = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)\Z")
_NAME = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\Z")


def _ipv4_part(label: str) -> int:
    if label.startswith("0x"):
        return int(label[2:] or "0", 16)
    if len(label) > 1 and label.startswith("0"):
        if not all(c in "01234567" for c in label):
            raise BadRequest(f"invalid octal number {label!r} in IPv4 address", "host")
        return int(label, 8)
    if not label.isdigit():
        raise BadRequest(f"invalid number {label!r} in IPv4 address", "host")
    return int(label)


def _parse_ipv4(labels: list[str]) -> str:
    if len(labels) > 4:
        raise BadRequest("a host ending in a number must be an IPv4 address (at most 4 parts)", "host")
    nums = [_ipv4_part(label) for label in labels]
    last_limit = 256 ** (5 - len(nums))
    if any(n > 255 for n in nums[:-1]) or nums[-1] >= last_limit:
        raise BadRequest("IPv4 address part out of range", "host")
    value = nums[-1]
    for i, n in enumerate(nums[:-1]):
        value += n << (8 * (3 - i))
    return str(ipaddress.IPv4Address(value))


def _ipv6(text: str) -> HostInfo:
    if "%" in text:
        raise BadRequest("IPv6 zone identifiers are not allowed", "host")
    try:
        addr = ipaddress.IPv6Address(text)
    except ValueError as exc:
        raise BadRequest(f"invalid IPv6 address {text!r}", "host") from exc
    if addr.ipv4_mapped is not None:
        return HostInfo("ipv4", str(addr.ipv4_mapped))
    return HostInfo("ipv6", str(addr))


def normalize_host(host: str | bytes) -> HostInfo:
    """Canonical `HostInfo` of a request host (no port). Raises `BadRequest` if it is not a host."""
    return _normalize_host_cached(host)


@functools.lru_cache(maxsize=4096)
def _normalize_host_cached(host: str | bytes) -> HostInfo:
    if isinstance(host, str) and len(host) <= 253 and host.isascii():
        h = host.lower()
        if _NAME.match(h) and not _NUMERIC.match(h[h.rfind(".") + 1 :]):
            return HostInfo("name", h)  # the common case: an ASCII name, no trailing dot
    if isinstance(host, bytes):
        try:
            host = host.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest("host is not valid UTF-8", "host") from exc
    if not host:
        raise BadRequest("empty host", "host")
    if host.startswith("["):
        if not host.endswith("]"):
            raise BadRequest(f"unterminated IPv6 literal {host!r}", "host")
        return _ipv6(host[1:-1])
    if ":" in host:
        return _ipv6(host)
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise BadRequest(f"host {host!r} is not a valid internationalised name", "host") from exc
    h = host.lower()
    if h.endswith("."):
        h = h[:-1]
    if not h:
        raise BadRequest("empty host", "host")
    labels = h.split(".")
    if _NUMERIC.match(labels[-1]):
        return HostInfo("ipv4", _parse_ipv4(labels))
    if len(h) > 253:
        raise BadRequest("host name longer than 253 characters", "host")
    for label in labels:
        if not _LABEL.match(label):
            raise BadRequest(f"invalid host name {host!r}", "host")
    return HostInfo("name", h)


def split_host_port(authority: str) -> tuple[str, int | None]:
    """Split "host", "host:port", "[v6]" or "[v6]:port". Raises `BadRequest` on a bad port."""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise BadRequest(f"unterminated IPv6 literal in {authority!r}", "host")
        host, rest = authority[: end + 1], authority[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise BadRequest(f"invalid authority {authority!r}", "host")
        port_text = rest[1:]
    elif authority.count(":") == 1:
        host, port_text = authority.split(":")
    else:
        return authority, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise BadRequest(f"invalid port in {authority!r}", "host")
    return host, int(port_text)


def same_authority(*hosts: str | None) -> bool:
    """True if every given host (CONNECT authority, SNI, Host header; None = absent) is the same host.

    Ports are ignored here (compare them separately); a malformed host raises `BadRequest`.
    """
    seen = {normalize_host(split_host_port(h)[0]) for h in hosts if h}
    return len(seen) <= 1


# --- paths -------------------------------------------------------------------------------------

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# characters that may appear unencoded in a path segment (RFC 3986 pchar minus pct-encoded)
_RAW_OK = _UNRESERVED | frozenset(b"!$&'()*+,;=:@")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_FAST = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*\Z")


def _forbidden(byte: int) -> bool:
    return byte < 0x20 or byte == 0x7F


def normalize_path(path: str | bytes) -> str:
    """Canonical form of a request path; anything from the first `?` on is the query and is dropped.

    Raises `BadRequest` for anything that must be answered 400 (see the module docstring).
    """
    if isinstance(path, str):
        qpos = path.find("?")
        if qpos >= 0:
            path = path[:qpos]
        if _FAST.match(path) and "//" not in path and "/." not in path:
            return path
        try:
            raw = path.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as exc:
            raise BadRequest("path is not valid UTF-8", "path") from exc
    else:
        raw = bytes(path).split(b"?", 1)[0]
    return _normalize_bytes(raw)


def _normalize_bytes(raw: bytes) -> str:
    if not raw.startswith(b"/"):
        raise BadRequest("path must start with '/'", "path")
    values = bytearray()
    encoded: list[bool] = []
    i, n = 0, len(raw)
    while i < n:
        b = raw[i]
        if b == 0x25:  # '%'
            if i + 2 >= n:
                raise BadRequest("truncated percent-escape in path", "path")
            h1, h2 = raw[i + 1], raw[i + 2]
            if h1 not in _HEX or h2 not in _HEX:
                raise BadRequest("invalid percent-escape in path", "path")
            v = int(raw[i + 1 : i + 3], 16)
            if v == 0x5C:
                raise BadRequest("encoded '\\' in path", "path")
            if _forbidden(v):
                raise BadRequest("encoded control character (NUL, CR, LF, ...) in path", "path")
            values.append(v)
            encoded.append(True)
            i += 3
            continue
        if b == 0x5C:
            raise BadRequest("'\\' in path", "path")
        if b == 0x23:
            raise BadRequest("'#' (fragment) in request path", "path")
        if _forbidden(b):
            raise BadRequest("control character (NUL, CR, LF, ...) in path", "path")
        values.append(b)
        encoded.append(False)
        i += 1
    try:
        bytes(values).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("path is not valid UTF-8 (invalid or overlong sequence)", "path") from exc
    out: list[str] = []
    for v, enc in zip(values, encoded, strict=True):
        if v in _UNRESERVED or (not enc and v in _RAW_OK) or (not enc and v == 0x2F):
            out.append(chr(v))
        else:
            out.append(f"%{v:02X}")
    joined = "".join(out)
    if "%2F" in joined and any(seg.split(";", 1)[0] in (".", "..") for seg in joined.split("/")):
        # `a%2Fb/../c` is /c to us but /a/c to a server that reads %2F as / first
        raise BadRequest("encoded '/' together with dot segments in path", "path")
    path = _remove_dot_segments(joined)
    if "%2F" in path:
        segs = path.replace("%2F", "/").split("/")[1:]
        if any(seg.split(";", 1)[0] in ("", ".", "..") for seg in segs[:-1]) or segs[-1].split(";", 1)[0] in (
            ".",
            "..",
        ):
            raise BadRequest("encoded '/' that would make an empty or dot segment", "path")
    return path


def _remove_dot_segments(path: str) -> str:
    parts = path.split("/")[1:]
    segs: list[str] = []
    trailing = False
    for part in parts:
        trailing = False
        name = part.split(";", 1)[0]
        if part != name and name in (".", ".."):
            raise BadRequest("dot segment with parameters (e.g. '..;x') in path", "path")
        if part == "..":
            if segs:
                segs.pop()
            trailing = True
        elif part in (".", ""):
            trailing = True
        else:
            segs.append(part)
    if not segs:
        return "/"
    return "/" + "/".join(segs) + ("/" if trailing else "")


def path_forms(path: str) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """The other readings of the normalised `path`: `(must_allow, deny_forms)`. `must_allow` are
    (form, why) pairs a request's path must also be allowed as (without `;params`; with `%2F` read as
    `/`); `deny_forms` (the path first) are every form a deny rule is matched against: those, plus
    the fully percent-decoded form (any depth), NFKC-mapped and with `\\` read as `/`, and that form
    with trailing dots and spaces of segments removed (how Windows servers read names)."""
    if "%" not in path and ";" not in path and "./" not in path and not path.endswith("."):
        return (), (path,)
    must: list[tuple[str, str]] = []
    if ";" in path:
        must.append((strip_params(path), "the path without ;parameters"))
    if "%2F" in path:
        slash = path.replace("%2F", "/")
        must.append((slash, "the path with %2F read as /"))
        if ";" in slash:
            must.append((strip_params(slash), "the path with %2F read as / and without ;parameters"))
    deep = _deep_form(path)
    trimmed = _trim_segments(deep)
    deny = [path, *(f for f, _ in must), deep, strip_params(deep), trimmed, strip_params(trimmed)]
    seen = {path}
    must_forms = []
    for form, why in must:
        if form not in seen:
            seen.add(form)
            must_forms.append((form, why))
    return tuple(must_forms), tuple(dict.fromkeys(deny))


_PCT_BYTES = re.compile(rb"%([0-9A-Fa-f]{2})")
_KEEP = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/")


def _deep_form(path: str) -> str:
    """`path` percent-decoded until nothing changes (a few rounds), NFKC-mapped, `\\` as `/`,
    re-encoded the way `normalize_path` writes paths, dot segments resolved (`..;x` read as `..`)."""
    raw = path.encode("utf-8", "surrogateescape")
    for _ in range(4):
        decoded = _PCT_BYTES.sub(lambda m: bytes([int(m.group(1), 16)]), raw)
        if decoded == raw:
            break
        raw = decoded
    text = raw.decode("utf-8", "surrogateescape")
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    text = text.replace("\\", "/")
    out = []
    for ch in text:
        if ch in _KEEP:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))
    return _resolve_leniently("/" + "".join(out).lstrip("/"))


def _resolve_leniently(path: str) -> str:
    segs: list[str] = []
    parts = path.split("/")[1:]
    for part in parts:
        name = part.split(";", 1)[0]
        if name == "..":
            if segs:
                segs.pop()
        elif name not in (".", ""):
            segs.append(part)
    trailing = bool(parts) and parts[-1].split(";", 1)[0] in ("", ".", "..")
    return "/" + "/".join(segs) + ("/" if trailing and segs else "")


def _trim_segments(path: str) -> str:
    segs = []
    for seg in path.split("/"):
        while seg.endswith((".", "%20")) and seg not in (".", ".."):
            seg = seg[:-1] if seg.endswith(".") else seg[:-3]
        segs.append(seg)
    return _resolve_leniently("/".join(segs)) if path.startswith("/") else path


def strip_params(path: str) -> str:
    """The normalised path without `;params` in any segment (how Tomcat-like servers route)."""
    if ";" not in path:
        return path
    stripped = "/".join(seg.split(";", 1)[0] for seg in path.split("/"))
    return _remove_dot_segments(stripped) if stripped.startswith("/") else "/"


# --- methods and overrides ---------------------------------------------------------------------

_METHOD = re.compile(r"[A-Z][A-Z0-9_-]{0,31}\Z")
_COMMON_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OVERRIDE_HEADERS = frozenset({"x-http-method-override", "x-http-method", "x-method-override"})
OVERRIDE_PARAMS = frozenset({"_method"})


def normalize_method(method: str | bytes) -> str:
    """The method as an exact upper-case token; anything else raises `BadRequest`."""
    if method in _COMMON_METHODS:
        return method  # type: ignore[return-value]
    if isinstance(method, bytes):
        method = method.decode("latin-1")
    if not _METHOD.match(method):
        raise BadRequest(f"invalid HTTP method {method[:40]!r} (methods are upper-case tokens)", "method")
    return method


def _pct_decode(text: str, plus: bool) -> str:
    if plus:
        text = text.replace("+", " ")
    if "%" not in text:
        return text
    raw = text.encode("utf-8", "surrogateescape")
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        b = raw[i]
        if b == 0x25:
            if i + 2 >= n or raw[i + 1] not in _HEX or raw[i + 2] not in _HEX:
                raise BadRequest("invalid percent-escape in query", "query")
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(b)
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("query is not valid UTF-8", "query") from exc


def parse_query(query: str, separators: str = "&") -> list[tuple[str, str]]:
    """Decoded (name, value) pairs of a query string, in order; `+` is a space.

    Raises `BadRequest` for invalid escapes or UTF-8. Pass `separators="&;"` to also split on `;`.
    """
    if not query:
        return []
    parts = re.split("[" + re.escape(separators) + "]", query) if len(separators) > 1 else query.split("&")
    pairs = []
    for part in parts:
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((_pct_decode(name, True), _pct_decode(value, True)))
    return pairs


def _header_items(headers: Any) -> Iterable[tuple[str, str]]:
    if not headers:
        return ()
    fields = getattr(headers, "fields", None)  # mitmproxy Headers: raw (bytes, bytes) fields
    if fields is not None:
        return ((k.decode("latin-1"), v.decode("latin-1")) for k, v in fields)
    if isinstance(headers, Mapping):
        return headers.items()
    return headers


def is_override_param(name: str) -> bool:
    """True if a server could read parameter `name` as the method override (`_method`): compared
    case-insensitively, the way PHP rewrites names (leading spaces dropped, ` ` and `.` become `_`, a
    `[` starts an array key, a NUL ends the name)."""
    n = name.split("\x00", 1)[0].split("[", 1)[0].strip().lower()
    return n.replace(" ", "_").replace(".", "_") in OVERRIDE_PARAMS


def override_methods(headers: Any = (), query: str = "") -> list[str]:
    """Methods a request asks the server to use instead of its own (method-override headers and
    `_method` query parameters), upper-cased. A value that is not a method token raises `BadRequest`."""
    if not headers and not query:
        return []
    found: list[str] = []
    for name, value in _header_items(headers):
        if name.lower() in OVERRIDE_HEADERS:
            found.extend(v.strip() for v in value.split(","))
    if query and ("%" in query or "method" in query.lower()):
        for name, value in parse_query(query, "&;"):
            if is_override_param(name):
                found.append(value.strip())
    out: list[str] = []
    for value in found:
        if not value:
            continue
        method = normalize_method(value.upper())
        if method not in out:
            out.append(method)
    return out
