"""Method overrides carried in a request body: `_method=DELETE` in a form (urlencoded or multipart), or
a top-level `"_method"` key in JSON (Rails/Rack, Laravel/Symfony, Spring, Express method-override...).

`body_override_methods(headers, body)` reads every content type a server might take a form from (no
Content-Type, `application/x-www-form-urlencoded`, `multipart/form-data`, JSON), in every spelling a
server might accept: parameter names compared case-insensitively after percent-decoding, with PHP's
rewriting of names (leading spaces dropped, ` ` and `.` read as `_`, `name[...]`), repeated
parameters, declared charsets (UTF-16, EBCDIC, ... are decoded first), RFC 2231 `name*=` in
multipart, base64/quoted-printable parts, and compressed bodies (both the raw and the decoded bytes).
What it cannot read with certainty raises `BadRequest` (answer 400): it must never report "no override"
for a body it could not parse where a server might have found one. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import contextlib
import json
import quopri
import re
import zlib
from collections.abc import Iterable
from typing import Any

from ._errors import BadRequest
from ._normalize import _header_items, is_override_param, normalize_method

FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
MAX_DECODED = 8 * 1024 * 1024  # a compressed body is not inflated past this (a zip bomb is refused)
# charsets in which the bytes that matter (`_method=`, `&`, `;`, `%`) are plain ASCII
_ASCII_COMPATIBLE = frozenset(codecs.lookup(c).name for c in ("utf-8", "ascii", "latin-1", "cp1252"))


def media_types(headers: Any) -> list[tuple[str, dict[str, str]]]:
    """Every (media type, parameters) of the request's Content-Type header(s), lower-cased types;
    comma-separated values count separately (servers differ on which one they take)."""
    out = []
    for name, value in _header_items(headers):
        if name.lower() != "content-type":
            continue
        for part in _split_unquoted(value, ","):
            media, _, rest = part.partition(";")
            out.append((media.strip().lower(), _params(rest)))
    return out


def _split_unquoted(text: str, sep: str) -> list[str]:
    parts, cur, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return parts


def _params(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in _split_unquoted(text, ";"):
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or not key:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        if key in out and out[key] != value:
            raise BadRequest(f"Content-Type parameter {key!r} given twice with different values", "header")
        out[key] = value
    return out


def may_carry_override(headers: Any, method: str = "POST") -> bool:
    """True if a server could take a method override from this request's body: no Content-Type, or a
    form, multipart form or JSON type among its Content-Type values."""
    try:
        types = media_types(headers)
    except BadRequest:
        return True  # the body check refuses it
    return not types or any(_kind(t) is not None for t, _ in types)


def _kind(media: str) -> str | None:
    if media in (FORM, "") or media == MULTIPART:
        return media or FORM
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return "json"
    return None


def body_override_methods(headers: Any, body: bytes) -> list[str]:
    """Methods the body asks the server to use (upper-cased, in order, each once). Raises `BadRequest`
    when the body cannot be read with certainty (see the module docstring)."""
    if not body:
        return []
    bodies = [body]
    encodings = [
        e.strip().lower()
        for name, value in _header_items(headers)
        if name.lower() == "content-encoding"
        for e in value.split(",")
        if e.strip() and e.strip().lower() != "identity"
    ]
    if encodings:
        bodies.append(_decode_content(body, encodings))
    types = media_types(headers) or [("", {})]
    found: list[str] = []
    for data in bodies:
        for media, params in types:
            kind = _kind(media)
            if kind == FORM:
                found += _form_values(data, _charset(params))
            elif kind == MULTIPART:
                found += _multipart_values(data, params)
            elif kind == "json":
                found += _json_values(data, params)
    out: list[str] = []
    for value in found:
        value = value.strip()
        if not value:
            continue
        method = normalize_method(value.upper())
        if method not in out:
            out.append(method)
    return out


# --- content codings ---------------------------------------------------------------------------


def _decode_content(body: bytes, encodings: list[str]) -> bytes:
    data = body
    for enc in reversed(encodings):  # the last coding applied is undone first
        try:
            if enc in ("gzip", "x-gzip"):
                data = _inflate(data, 16 + zlib.MAX_WBITS)
            elif enc == "deflate":
                try:
                    data = _inflate(data, zlib.MAX_WBITS)
                except zlib.error:
                    data = _inflate(data, -zlib.MAX_WBITS)
            elif enc == "br":
                import brotli  # a mitmproxy dependency

                data = brotli.decompress(data)
            elif enc == "zstd":
                import zstandard  # a mitmproxy dependency

                data = zstandard.ZstdDecompressor().decompress(data, max_output_size=MAX_DECODED)
            else:
                raise BadRequest(f"cannot check a body with Content-Encoding {enc!r}", "body")
        except BadRequest:
            raise
        except Exception as exc:
            raise BadRequest(f"body does not decode as Content-Encoding {enc!r}: {exc}", "body") from None
        if len(data) > MAX_DECODED:
            raise BadRequest("decoded body is too large to check for a method override", "body")
    return data


def _inflate(data: bytes, wbits: int) -> bytes:
    d = zlib.decompressobj(wbits)
    out = d.decompress(data, MAX_DECODED + 1)
    if len(out) > MAX_DECODED or d.unconsumed_tail:
        raise BadRequest("decoded body is too large to check for a method override", "body")
    return out


# --- charsets ----------------------------------------------------------------------------------


def _charset(params: dict[str, str]) -> str:
    name = params.get("charset", "utf-8").strip().lower() or "utf-8"
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise BadRequest(f"unknown charset {name[:40]!r} in Content-Type", "header") from None


def _text(data: bytes, charset: str) -> str:
    try:
        return data.decode(charset)
    except (UnicodeDecodeError, LookupError) as exc:
        raise BadRequest(f"body is not valid {charset}: {exc}", "body") from None


# --- application/x-www-form-urlencoded ---------------------------------------------------------

def _unquote_bytes(raw: bytes) -> bytes:
    return re.sub(rb"%([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), raw.replace(b"+", b" "))


def _form_values(data: bytes, charset: str) -> list[str]:
    if charset not in _ASCII_COMPATIBLE:  # UTF-16, EBCDIC, ...: read the text as the server would
        data, charset = _text(data, charset).encode("utf-8", "surrogateescape"), "utf-8"
    out: list[str] = []
    for part in re.split(rb"[&;]", data):
        name, _, value = part.partition(b"=")
        if part and _name_matches(_unquote_bytes(name), charset):
            out.append(_value(_unquote_bytes(value), charset))
    return out


def _name_matches(name: bytes, charset: str) -> bool:
    candidates = {name.decode("latin-1")}
    for cs in (charset, "utf-8"):
        with contextlib.suppress(UnicodeDecodeError, LookupError):
            candidates.add(name.decode(cs))
    return any(is_override_param(c) for c in candidates)


def _value(value: bytes, charset: str) -> str:
    for cs in dict.fromkeys((charset, "utf-8")):
        try:
            return value.decode(cs)
        except (UnicodeDecodeError, LookupError):
            continue
    raise BadRequest("a method-override value is not valid text", "body")


# --- multipart/form-data -----------------------------------------------------------------------

_NAME_PARAM = re.compile(
    rb"""(?:^|[;\s])name(\*?)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)""", re.IGNORECASE | re.MULTILINE
)


def _multipart_values(data: bytes, params: dict[str, str]) -> list[str]:
    boundary = params.get("boundary")
    if not boundary:
        raise BadRequest("multipart/form-data without a boundary", "header")
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    out: list[str] = []
    # Split at every occurrence of the delimiter (a superset of what any parser splits at), and read
    # every header-like line of every piece: what a strict parser sees as a part is seen here too.
    for piece in data.split(delimiter):
        head, body = _split_head(piece)
        names = list(_part_names(head))
        if not any(is_override_param(n) for n in names):
            continue
        value = _part_value(body, head)
        out.append(_value(value.strip(b"\r\n\t "), _part_charset(head)))
    return out


def _split_head(piece: bytes) -> tuple[bytes, bytes]:
    ends = [(i, n) for i, n in ((piece.find(b"\r\n\r\n"), 4), (piece.find(b"\n\n"), 2)) if i >= 0]
    if not ends:
        return piece, b""
    i, n = min(ends)
    return piece[:i], piece[i + n :]


def _part_names(head: bytes) -> Iterable[str]:
    for star, raw in _NAME_PARAM.findall(head):
        value = raw
        if value[:1] == b'"' and value[-1:] == b'"' and len(value) >= 2:
            value = re.sub(rb"\\(.)", rb"\1", value[1:-1])
        if star:  # RFC 2231 / 5987: charset'lang'percent-encoded
            value = _unquote_bytes(value.split(b"'", 2)[-1])
        if b"=?" in value:  # RFC 2047 encoded-word: refuse rather than guess
            raise BadRequest("RFC 2047 encoded multipart field name", "body")
        yield from {value.decode("latin-1"), value.decode("utf-8", "replace")}


def _header_value(head: bytes, name: bytes) -> bytes | None:
    for line in head.splitlines():
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip()
    return None


def _part_value(body: bytes, head: bytes) -> bytes:
    cte = (_header_value(head, b"content-transfer-encoding") or b"").lower()
    try:
        if cte == b"base64":
            return base64.b64decode(b"".join(body.split()), validate=False)
        if cte == b"quoted-printable":
            return quopri.decodestring(body)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"multipart part does not decode: {exc}", "body") from None
    if cte not in (b"", b"7bit", b"8bit", b"binary"):
        raise BadRequest("unknown Content-Transfer-Encoding on a method-override part", "body")
    return body


def _part_charset(head: bytes) -> str:
    ctype = _header_value(head, b"content-type")
    if ctype is None:
        return "utf-8"
    return _charset(_params(ctype.decode("latin-1").partition(";")[2]))


# --- JSON --------------------------------------------------------------------------------------


def _json_values(data: bytes, params: dict[str, str]) -> list[str]:
    objects: list[list[tuple[str, Any]]] = []

    def hook(items: list[tuple[str, Any]]) -> dict:
        objects.append(items)  # innermost objects finish first: the top-level one comes last
        return {}

    source: bytes | str = data
    if "charset" in params:
        source = _text(data, _charset(params))
    try:
        doc = json.loads(source, object_pairs_hook=hook)
    except (ValueError, RecursionError):
        if b"method" in data.lower() or b"\\u" in data or "charset" in params:
            raise BadRequest("a JSON body that does not parse but may name a method override",
                             "body") from None
        return []
    if not isinstance(doc, dict):
        return []
    out = []
    for key, value in objects[-1]:
        if not is_override_param(key):
            continue
        if not isinstance(value, str):
            raise BadRequest(f"JSON method override {key!r} is not a string", "body")
        out.append(value)
    return out
