"""Fast path for loading policy YAML: libyaml's C composer (through PyYAML) builds the same tree
ruamel.yaml's round-trip loader would (CommentedMap/CommentedSeq with line/column data, YAML 1.2
core-schema scalars), about ten times faster.

It must never produce a tree that differs from ruamel's: whenever it is not certain (no libyaml, a
syntax error, tags, anchors/aliases, merge keys, duplicate or non-scalar keys, scalars whose type
ruamel resolves specially such as dates, octal/hex or exponent numbers) it returns None and the
caller loads with ruamel, which also produces the error messages.
"""

from __future__ import annotations

import re
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

try:
    import yaml
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on the installed PyYAML build
    yaml = None  # type: ignore[assignment]

_INT = re.compile(r"-?(0|[1-9][0-9]*)\Z")
_FLOAT = re.compile(r"-?(0|[1-9][0-9]*)\.[0-9]+\Z")
_NUMERIC_LIKE = re.compile(r"[-+0-9.][-+0-9._:eExXoObB]*\Z|\.(inf|Inf|INF|nan|NaN|NAN)\Z|[0-9]{4}-")
_TAG_OR_ANCHOR = re.compile(r"(?:^|[\s\[\{,:-])[!&]\S", re.MULTILINE)
_NULL = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})


class _Unsure(Exception):
    pass


def _scalar(node: Any) -> Any:
    value = node.value
    if node.style:  # quoted or block scalar: always a string
        return value
    if value == "":
        raise _Unsure("empty value")  # ruamel places it at the next token; let it decide
    if value in _NULL:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    if _INT.match(value):
        return int(value)
    if _FLOAT.match(value):
        return float(value)
    if _NUMERIC_LIKE.match(value):
        raise _Unsure(value)
    return value


def _convert(node: Any, seen: set[int]) -> Any:
    if id(node) in seen:
        raise _Unsure("alias")
    seen.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node)
    if isinstance(node, yaml.SequenceNode):
        seq = CommentedSeq()
        seq._yaml_set_line_col(node.start_mark.line, node.start_mark.column)
        for i, item in enumerate(node.value):
            seq.append(_convert(item, seen))
            seq.lc.add_kv_line_col(i, [item.start_mark.line, item.start_mark.column])
        return seq
    if isinstance(node, yaml.MappingNode):
        m = CommentedMap()
        m._yaml_set_line_col(node.start_mark.line, node.start_mark.column)
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode) or k.tag == "tag:yaml.org,2002:merge":
                raise _Unsure("complex or merge key")
            key = _convert(k, seen)
            if key in m:
                raise _Unsure("duplicate key")
            m[key] = _convert(v, seen)
            m.lc.add_kv_line_col(
                key, [k.start_mark.line, k.start_mark.column, v.start_mark.line, v.start_mark.column]
            )
        return m
    raise _Unsure("unknown node")  # pragma: no cover


def load(text: str) -> tuple[Any] | None:
    """`(document,)` as ruamel's round-trip loader would build it, or None when unsure."""
    if yaml is None or _TAG_OR_ANCHOR.search(text):
        return None
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return None
    if node is None:
        return (None,)
    try:
        return (_convert(node, set()),)
    except _Unsure:
        return None
