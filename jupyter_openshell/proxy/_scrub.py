"""Finds a secret in bytes going back to a caller, in the spellings a backend may echo it in, and
replaces each occurrence with `[REDACTED]`.

Spellings ("needles"): the secret in any letter case; its base64 in the standard and the URL alphabet at
each of the three alignments (so base64 of `Bearer <key>`, of `user:<key>` or of a JSON blob holding it
is found too: only the characters that depend on the key alone are matched); its hex; and the base64 and
hex of its percent-encoded forms. Each needle is also found where characters are written as escapes, one
or two layers deep: percent-encoding, JSON/JS `\\uXXXX`, `\\xXX` and `\\/`, HTML numeric and named
entities, mixed freely within one occurrence. The escapes are decoded into views of the data, the
needles are searched there, and what matches is redacted in the original bytes (whole escapes).

`Scrubber` works on a stream: it holds back only the bytes that could still become part of a match
(an incomplete escape, or a needle's first characters at the end), so a key split across chunks is
found and a normal stream is not delayed. It must never emit bytes that could complete a match with
bytes not yet seen, and never log or return the secret.
"""

from __future__ import annotations

import base64
import bisect
import html.entities
import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote

REDACTED = b"[REDACTED]"

# every escape this module decodes (used as is when the secret is not ASCII)
_ANY_ESCAPE = (
    rb"%([0-9A-Fa-f]{2})|\\u([0-9A-Fa-f]{4})|\\x([0-9A-Fa-f]{2})|\\([!-/:-@\[-`{-~])"
    rb"|&#([0-9]{1,7});?|&#[xX]([0-9A-Fa-f]{1,6});?|&([A-Za-z][A-Za-z0-9]{1,31};?)"
)
# the start of an escape that more bytes could complete (only looked for near the end)
_OPEN_ESCAPE = re.compile(
    rb"(?:%[0-9A-Fa-f]?|\\(?:u[0-9A-Fa-f]{0,3}|x[0-9A-Fa-f]?)?"
    rb"|&(?:#(?:[xX][0-9A-Fa-f]{0,6}|[0-9]{0,7})|[A-Za-z][A-Za-z0-9]{0,31})?)\Z"
)
_OPEN_ESCAPE_MAX = 40
_ENTITIES = {name.encode(): value.encode() for name, value in html.entities.html5.items() if len(value) == 1}
# what a second layer of escaping needs from the first: the escape characters themselves
_ESCAPE_SYNTAX = b"%\\&#;"


def _trie(words: set[bytes]) -> bytes:
    """A regex matching exactly `words` (longest first), shaped as a trie so that the engine never
    tries alternatives one by one: {b"2f", b"2b", b"41"} -> (?:2[bf]|41)."""
    if b"" in words:
        rest = _trie({w for w in words if w})
        return b"(?:" + rest + b")?" if rest else b""
    if all(len(w) == 1 for w in words):
        return b"[" + b"".join(re.escape(w) for w in sorted(words)) + b"]"
    heads: dict[bytes, set[bytes]] = {}
    for w in words:
        heads.setdefault(w[:1], set()).add(w[1:])
    parts = [re.escape(h) + _trie(tails) for h, tails in sorted(heads.items())]
    return parts[0] if len(parts) == 1 else b"(?:" + b"|".join(parts) + b")"


def _hex(byte: int, width: int) -> set[bytes]:
    """`byte` as `width` hex digits in every mix of letter case."""
    out = {b""}
    for d in b"%0*x" % (width, byte):
        out = {w + bytes([v]) for w in out for v in {d, d - 32 if d >= 0x61 else d}}
    return out


@lru_cache(maxsize=64)
def _escape_re(alphabet: bytes) -> re.Pattern[bytes]:
    """Escapes of the characters in `alphabet` only, with the groups `_unescape` reads: an escape of
    any other character cannot be part of a match, so it is left as it is (and costs nothing)."""
    if not alphabet.isascii():
        return re.compile(_ANY_ESCAPE)
    chars = sorted(set(alphabet))
    hex2 = _trie({h for c in chars for h in _hex(c, 2)})
    hex_short = _trie({h for c in chars for h in _hex(c, 1 if c < 16 else 2)})
    punct = {bytes([c]) for c in chars if 0x21 <= c <= 0x7E and not bytes([c]).isalnum()}
    names = {n for n, v in _ENTITIES.items() if v[0] in chars}
    never = b"(?!)()"
    return re.compile(
        b"%(" + hex2 + b")|\\\\u(00" + hex2 + b")|\\\\x(" + hex2 + b")"
        + (b"|\\\\(" + _trie(punct) + b")" if punct else b"|" + never)
        + b"|&#0{0,6}(" + _trie({b"%d" % c for c in chars}) + b")(?![0-9]);?"
        + b"|&#[xX]0{0,5}(" + hex_short + b")(?![0-9A-Fa-f]);?"
        + (b"|&(" + _trie(names) + b")" if names else b"|" + never)
    )


def _unescape(m: re.Match[bytes]) -> bytes | None:
    pct, u4, x2, punct, dec, hexa, name = m.groups()
    if pct or x2:
        return bytes([int(pct or x2, 16)])
    if punct:
        return punct
    if name:
        return _ENTITIES.get(name)
    code = int(u4 or hexa, 16) if (u4 or hexa) else int(dec)
    if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code).encode()


class _View:
    """`text` = the escapes of `parent` decoded; positions map back to the raw bytes."""

    __slots__ = ("_out_end", "_out_start", "_raw_end", "_raw_start", "parent", "text")

    def __init__(self, text: bytes, parent: _View | None = None):
        self.text = text
        self.parent = parent
        self._out_start: list[int] = []  # where each decoded escape starts in `text`
        self._out_end: list[int] = []
        self._raw_start: list[int] = []  # ... and where it was in the parent
        self._raw_end: list[int] = []

    @classmethod
    def decode(cls, parent: _View, escapes: re.Pattern[bytes]) -> _View:
        src = parent.text
        view = cls(b"", parent)
        pieces: list[bytes] = []
        pos = out = 0
        for m in escapes.finditer(src):
            value = _unescape(m)
            if value is None:
                continue
            start, end = m.span()
            pieces.append(src[pos:start])
            out += start - pos
            view._out_start.append(out)
            view._raw_start.append(start)
            pieces.append(value)
            out += len(value)
            view._out_end.append(out)
            view._raw_end.append(end)
            pos = end
        pieces.append(src[pos:])
        view.text = b"".join(pieces)
        return view

    def raw(self, pos: int, end: bool = False) -> int:
        """The raw position of `pos` (a match start, or with `end` a match end): escapes count whole."""
        if self.parent is None:
            return pos
        if end:
            i = bisect.bisect_left(self._out_start, pos) - 1
            if i >= 0 and pos <= self._out_end[i]:
                return self.parent.raw(self._raw_end[i], True)
        else:
            i = bisect.bisect_right(self._out_start, pos) - 1
            if i >= 0 and pos < self._out_end[i]:
                return self.parent.raw(self._raw_start[i])
        parent_pos = pos if i < 0 else self._raw_end[i] + pos - self._out_end[i]
        return self.parent.raw(parent_pos, end)


def _b64_cores(data: bytes) -> list[bytes]:
    """The base64 characters that depend on `data` alone, wherever it sits in an encoded string."""
    out = []
    for offset, skip in ((0, 0), (1, 2), (2, 3)):
        enc = base64.b64encode(b"\0" * offset + data)
        core = enc[skip:(8 * (offset + len(data))) // 6]
        out += [core, core.translate(bytes.maketrans(b"+/", b"-_"))]
    return out


@dataclass(frozen=True)
class Needles:
    exact: tuple[bytes, ...]  # matched as they are
    folded: tuple[bytes, ...]  # lower-case, matched against lower-cased text
    alphabet: bytes  # every byte a needle can hold, in either case


@lru_cache(maxsize=64)
def needles(secret: bytes) -> Needles:
    """What to look for to find `secret` (see the module docstring)."""
    text = secret.decode("utf-8", "replace")
    quoted = quote(text, safe="")
    bases = dict.fromkeys([secret, quoted.encode(),
                           re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quoted).encode()])
    exact: list[bytes] = []
    folded: list[bytes] = [secret.lower()]
    for base in bases:
        exact += _b64_cores(base)
        folded.append(base.hex().encode())
    minimum = min(len(secret), 8)
    exact = [n for n in dict.fromkeys(exact) if len(n) >= minimum]
    folded = [n for n in dict.fromkeys(folded) if len(n) >= minimum]
    alphabet = set(b"".join(exact + folded))
    alphabet |= set(bytes(alphabet).upper())
    return Needles(tuple(exact), tuple(folded), bytes(sorted(alphabet)))


def _open_escape(text: bytes) -> int:
    """Where an escape that more bytes could complete starts at the end of `text` (len(text): none)."""
    m = _OPEN_ESCAPE.search(text, max(0, len(text) - _OPEN_ESCAPE_MAX))
    return m.start() if m else len(text)


def _partial(text: bytes, needle: bytes) -> int:
    """The start of the longest end of `text` that is a proper prefix of `needle` (len(text): none)."""
    first = needle[:1]
    p = text.find(first, max(0, len(text) - len(needle) + 1))
    while p != -1:
        if needle.startswith(text[p:]):
            return p
        p = text.find(first, p + 1)
    return len(text)


def _search(view: _View, text: bytes, found: list[tuple[int, int]], hold: int,
            needles_: tuple[bytes, ...], final: bool) -> int:
    for needle in needles_:
        p = text.find(needle)
        while p != -1:
            found.append((view.raw(p), view.raw(p + len(needle), True)))
            p = text.find(needle, p + 1)
        if not final:
            q = _partial(text, needle)
            if q < len(text):
                hold = min(hold, view.raw(q))
    return hold


def find(data: bytes, secret: bytes, final: bool = True) -> tuple[list[tuple[int, int]], int]:
    """The (start, end) spans of `data` that spell `secret`, and where the bytes that could still become
    part of a match start (len(data) when none; always so with `final`)."""
    spec = needles(secret)
    found: list[tuple[int, int]] = []
    view = _View(data)
    hold = len(data)
    for depth in range(3):
        if not final and depth < 2:
            cut = _open_escape(view.text)
            if cut < len(view.text):  # decode and search only what no later byte can change
                hold = min(hold, view.raw(cut))
                view.text = view.text[:cut]
        hold = _search(view, view.text, found, hold, spec.exact, final)
        hold = _search(view, view.text.lower(), found, hold, spec.folded, final)
        text = view.text
        if depth == 2 or (b"%" not in text and b"\\" not in text and b"&" not in text):  # memchr, fast
            break
        # the first layer also decodes escaped escape characters (%25, \\, &amp;) for the second
        view = _View.decode(view, _escape_re(spec.alphabet + (_ESCAPE_SYNTAX if depth == 0 else b"")))
        if not view._out_start:
            break
    return found, hold


def redact(data: bytes, spans: list[tuple[int, int]]) -> bytes:
    """`data` with each of `spans` (merged where they overlap) replaced by REDACTED."""
    if not spans:
        return data
    out = []
    pos = 0
    for start, end in sorted(spans):
        if start < pos:  # overlaps the previous span
            pos = max(pos, end)
            continue
        out += [data[pos:start], REDACTED]
        pos = end
    out.append(data[pos:])
    return b"".join(out)


def scrub(data: bytes, secret: bytes) -> bytes:
    """`data` with every spelling of `secret` redacted."""
    spans, _ = find(data, secret)
    return redact(data, spans)


class Scrubber:
    """Scrubs a stream: `feed(chunk)` returns what is safe to pass on now, `flush()` the rest."""

    def __init__(self, secret: bytes):
        self.secret = secret
        self._tail = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._tail + chunk if self._tail else chunk
        spans, hold = find(data, self.secret, final=False)
        for start, end in spans:
            if start < hold < end:
                hold = start
        self._tail = data[hold:]
        return redact(data[:hold], [s for s in spans if s[1] <= hold])

    def flush(self) -> bytes:
        data, self._tail = self._tail, b""
        return scrub(data, self.secret)
