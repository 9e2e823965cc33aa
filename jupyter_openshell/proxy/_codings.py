"""Streaming decoders for HTTP content codings (gzip, deflate, br, zstd), so that bytes a backend sends
compressed can be inspected as the caller will read them.

`decoder_for(values)` turns the Content-Encoding header values into one callable that takes compressed
chunks and returns decoded bytes; `UnsupportedCoding` for a coding it cannot decode, and
`CodingError` when the data is not valid for its coding. Multi-member gzip and multi-frame zstd are
decoded whole. It must never pass on bytes it could not decode.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable

import brotli
import zstandard

_ALIASES = {"x-gzip": "gzip", "x-deflate": "deflate"}


class UnsupportedCoding(ValueError):
    """A Content-Encoding this proxy cannot decode."""


class CodingError(ValueError):
    """Data that is not valid for its declared content coding."""


class _Zlib:
    """gzip (wbits 16+15), zlib-wrapped or raw deflate; for gzip a new member may follow the end of one."""

    def __init__(self, gzip: bool):
        self.gzip = gzip
        self.obj: zlib._Decompress | None = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
        self.head = b""

    def __call__(self, data: bytes, final: bool) -> bytes:
        if self.obj is None:  # "deflate" is zlib-wrapped (RFC 9110), but raw deflate is common: look
            self.head += data
            if len(self.head) < 2 and not final:
                return b""
            data, self.head = self.head, b""
            wrapped = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self.obj = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        out = []
        try:
            while data:
                out.append(self.obj.decompress(data))
                data = self.obj.unused_data if self.obj.eof and self.gzip else b""
                if data:
                    self.obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
            if final:
                out.append(self.obj.flush())
        except zlib.error as exc:
            raise CodingError(f"invalid {'gzip' if self.gzip else 'deflate'} data: {exc}") from None
        return b"".join(out)


class _Brotli:
    def __init__(self) -> None:
        self.obj = brotli.Decompressor()

    def __call__(self, data: bytes, final: bool) -> bytes:
        try:
            return self.obj.process(data) if data else b""
        except brotli.error as exc:
            raise CodingError(f"invalid br data: {exc}") from None


class _Zstd:
    def __init__(self) -> None:
        self.obj = zstandard.ZstdDecompressor().decompressobj()

    def __call__(self, data: bytes, final: bool) -> bytes:
        out = []
        try:
            while data:
                out.append(self.obj.decompress(data))
                data = self.obj.unused_data if self.obj.eof else b""
                if data:
                    self.obj = zstandard.ZstdDecompressor().decompressobj()
        except zstandard.ZstdError as exc:
            raise CodingError(f"invalid zstd data: {exc}") from None
        return b"".join(out)


_MAKERS: dict[str, Callable[[], Callable[[bytes, bool], bytes]]] = {
    "gzip": lambda: _Zlib(gzip=True),
    "deflate": lambda: _Zlib(gzip=False),
    "br": _Brotli,
    "zstd": _Zstd,
}


def codings(values: Iterable[str]) -> list[str]:
    """The codings named by Content-Encoding / Transfer-Encoding header values, in the order they were
    applied, lower-cased ("identity" and "chunked", which the HTTP layer removes, left out)."""
    out = []
    for value in values:
        for part in value.split(","):
            name = part.strip().lower()
            if name and name not in ("identity", "chunked"):
                out.append(_ALIASES.get(name, name))
    return out


def decoder_for(values: Iterable[str]) -> Callable[[bytes, bool], bytes] | None:
    """A streaming decoder for Content-Encoding `values` (None when the body is not encoded): call it
    with each chunk and `final=False`, then once with the rest (maybe b"") and `final=True`."""
    names = codings(values)
    if not names:
        return None
    unknown = [n for n in names if n not in _MAKERS]
    if unknown:
        raise UnsupportedCoding(f"unsupported Content-Encoding {', '.join(unknown)!r}")
    steps = [_MAKERS[n]() for n in reversed(names)]  # the last coding applied is undone first

    def decode(chunk: bytes, final: bool) -> bytes:
        for step in steps:
            chunk = step(chunk, final)
        return chunk

    return decode
