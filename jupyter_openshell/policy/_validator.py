"""The validator's base: positions in the YAML document, type names for messages, and the generic shapes
(mapping with known keys, list, string, choice) every section is checked with. Each problem becomes an
`Issue` (file, line, column, field, message, what is expected, an example) collected on the validator; none
is raised here. It must never accept an unknown key, and never read anything.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any, TypeVar

from ruamel.yaml.comments import CommentedSeq

from ._errors import Issue

T = TypeVar("T")
Loc = tuple[int, int]

# sizes: bytes, or a number with a unit (K, M, G, T: x1000; Ki, Mi, Gi, Ti: x1024), for limits and resources
SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|k|M|G|T)?B?\Z")
SIZE_UNITS = {
    None: 1,
    "k": 1000,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}


# --- positions -----------------------------------------------------------------------------------


def key_loc(node: Any, key: Any, fallback: Loc) -> Loc:
    try:
        line, col = node.lc.key(key)
        return line + 1, col + 1
    except Exception:
        return fallback


def val_loc(node: Any, key: Any, fallback: Loc) -> Loc:
    try:
        if isinstance(node, CommentedSeq):
            line, col = node.lc.item(key)
        else:
            line, col = node.lc.value(key)
        return line + 1, col + 1
    except Exception:
        return fallback


def node_loc(node: Any, fallback: Loc) -> Loc:
    lc = getattr(node, "lc", None)
    if lc is not None and lc.line is not None:
        return lc.line + 1, lc.col + 1
    return fallback


def is_bool(x: Any) -> bool:
    return isinstance(x, bool) or type(x).__name__ == "ScalarBoolean"


def is_int(x: Any) -> bool:
    return isinstance(x, int) and not is_bool(x)


def is_num(x: Any) -> bool:
    return (isinstance(x, int | float)) and not is_bool(x)


def type_name(x: Any) -> str:
    if x is None:
        return "nothing (null)"
    if is_bool(x):
        return f"a boolean ({str(bool(x)).lower()})"
    if isinstance(x, dict):
        return "a mapping"
    if isinstance(x, list):
        return "a list"
    if isinstance(x, str):
        return f"the string {str(x)!r}"
    return f"{x!r}"


def did_you_mean(word: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    if not close:
        close = [c for c in choices if c.lower() == str(word).lower()]
    return f" (did you mean {close[0]!r}?)" if close else ""


class Validator:
    """Collects the issues of one document (`errors`, `warnings`) and checks generic shapes."""

    def __init__(self, file: str):
        self.file = file
        self.errors: list[Issue] = []
        self.warnings: list[Issue] = []

    def error(self, loc: Loc, field: str, message: str, expected: str = "", example: str = "") -> None:
        self.errors.append(Issue(self.file, loc[0], loc[1], field, message, expected, example))

    def warn(self, loc: Loc, field: str, message: str, expected: str = "", example: str = "") -> None:
        self.warnings.append(Issue(self.file, loc[0], loc[1], field, message, expected, example, "warning"))

    # generic shapes

    def mapping(self, node: Any, field: str, loc: Loc, keys: tuple[str, ...], example: str) -> bool:
        if not isinstance(node, dict):
            self.error(
                loc,
                field,
                f"expected a mapping, got {type_name(node)}",
                "a mapping of " + ", ".join(keys),
                example,
            )
            return False
        for key in node:
            if key not in keys:
                close = difflib.get_close_matches(str(key), list(keys), n=1, cutoff=0.6)
                fix = f"rename {key!r} to {close[0]!r}" if close else f"remove {key!r}"
                self.error(
                    key_loc(node, key, loc),
                    f"{field}.{key}" if field else str(key),
                    f"unknown key {key!r}{did_you_mean(key, keys)}",
                    "one of: " + ", ".join(keys),
                    fix,
                )
        return True

    def seq(self, node: Any, field: str, loc: Loc, what: str, example: str) -> bool:
        if not isinstance(node, list):
            self.error(
                loc, field, f"expected a list of {what}, got {type_name(node)}", f"a list of {what}", example
            )
            return False
        return True

    def string(self, node: Any, field: str, loc: Loc, expected: str, example: str) -> str | None:
        if not isinstance(node, str) or not node:
            self.error(loc, field, f"expected {expected}, got {type_name(node)}", expected, example)
            return None
        return str(node)

    def choice(self, node: Any, field: str, loc: Loc, choices: tuple[str, ...], example: str) -> str | None:
        if not isinstance(node, str) or node not in choices:
            hint = did_you_mean(node, choices) if isinstance(node, str) else ""
            self.error(
                loc,
                field,
                f"{type_name(node)} is not allowed here{hint}",
                "one of: " + ", ".join(choices),
                example,
            )
            return None
        return str(node)

    def each(
        self, node: Any, field: str, loc: Loc, parse: Callable[[Any, str, Loc, int], T | None]
    ) -> tuple[T, ...]:
        """Parse every item of the list `node` with `parse(item, field[i], loc, i)`; the valid ones."""
        parsed = (parse(item, f"{field}[{i}]", val_loc(node, i, loc), i) for i, item in enumerate(node))
        return tuple(p for p in parsed if p is not None)
