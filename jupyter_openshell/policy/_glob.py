"""Path and value globs: `*` matches within one path segment, `**` (a whole segment) across segments.

A whole-segment `*` matches one non-empty segment; `*` inside a segment (`v*.json`) matches any run
of non-`/` characters. Globs compile to anchored regular expressions. Pure functions; no I/O.
It must never let `*` cross a `/`, and never do I/O.
"""

from __future__ import annotations

import re


def path_glob_regex(pattern: str) -> str:
    """Regex source matching exactly the normalised paths the (normalised) glob `pattern` matches."""
    segs = pattern.split("/")[1:]
    out = []
    for i, seg in enumerate(segs):
        if seg == "**":
            out.append("(?:/.*)?" if i == len(segs) - 1 else "(?:/[^/]*)*")
        elif seg == "*":
            out.append("/[^/]+")
        else:
            out.append("/" + "[^/]*".join(re.escape(p) for p in seg.split("*")))
    return "".join(out) + r"\Z"


def compile_path_glob(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    """`ignore_case` (deny rules) also folds the case of ASCII letters; escapes in normalised paths
    are upper-case hex, so folding never makes `%2f` differ from `%2F`."""
    return re.compile(path_glob_regex(pattern), re.IGNORECASE | re.ASCII if ignore_case else 0)


def compile_value_glob(glob: str, ignore_case: bool = False) -> re.Pattern[str]:
    """A query-value glob: `*` matches any run of characters (the whole value must match)."""
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile(".*".join(re.escape(p) for p in glob.split("*")) + r"\Z", flags)


def is_literal(pattern: str) -> bool:
    return "*" not in pattern


def path_covers(a: str, b: str) -> bool:
    """Conservative: True only if every path matched by glob `b` is certainly matched by glob `a`."""
    if a == b or a == "/**":
        return True
    if is_literal(b):
        return compile_path_glob(a).match(b) is not None
    if a.endswith("/**") and "**" not in a[:-3] and "*" not in a[:-3]:
        prefix = a[:-3]
        return b == prefix or b.startswith(prefix + "/")
    return False
