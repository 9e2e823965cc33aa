"""The JSON Schema (draft 2020-12) of the policy format, for editors and `openshell policy schema`.

It mirrors the parser (`_parse` and its sections); the parser stays the authority (it also checks what a
schema cannot: host wildcards over public suffixes, globs, regexes). This module must never drift from the
key lists in `_keys.py`, which both read.
"""

from __future__ import annotations

from typing import Any

from ._keys import (
    ACTIONS,
    AUTH_KEYS,
    AUTH_TYPES,
    BACKEND_KEYS,
    FS_KEYS,
    FS_NAME_KEYS,
    MATCH_KEYS,
    MODES,
    PATH_KEYS,
    PRESET_KEYS,
    RESOURCE_KEYS,
    ROUTE_KEYS,
    RULE_KEYS,
)
from ._limits import LIMIT_KEYS, MIN_BODY
from ._presets import preset_names

_METHOD = {"type": "string", "pattern": r"^([A-Z][A-Z0-9_-]{0,31}|\*)$"}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
_PATH_GLOB = {"type": "string", "pattern": "^/", "description": "path glob: * within a segment, ** across"}
_QUERY = {
    "type": "object",
    "description": "parameter -> value glob(s); every occurrence must match",
    "additionalProperties": {
        "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]
    },
}
_SIZE = {
    "oneOf": [
        {"type": "integer", "minimum": 1048576},
        {"type": "string", "pattern": r"^\d+(\.\d+)?\s*(Ki|Mi|Gi|Ti|K|k|M|G|T)?B?$"},
    ]
}
_PATHS = {"type": "array", "items": {"type": "string", "pattern": "^/"}}
_ADDRESSES = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "string", "description": "an IP address or a CIDR"},
    "description": "addresses this rule's requests may reach although they are loopback, link-local or "
    "the proxy host's own (a name resolving there is refused otherwise)",
}


def _obj(keys: tuple[str, ...], props: dict[str, Any], required: tuple[str, ...] = (), **extra: Any) -> dict:
    assert set(props) == set(keys), (keys, props)
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = list(required)
    out.update(extra)
    return out


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a policy document."""
    path_rule = _obj(
        PATH_KEYS,
        {"path": _PATH_GLOB, "methods": {"type": "array", "items": _METHOD, "minItems": 1}, "query": _QUERY},
        ("path",),
    )
    rule = _obj(
        RULE_KEYS,
        {
            "host": {
                "type": "string",
                "description": 'exact host, "*.example.com" (one label), "**.example.com" '
                "(any depth), an IP address or a CIDR; omit only on deny rules (matches every host)",
            },
            "port": _PORT,
            "ports": {"type": "array", "items": _PORT, "minItems": 1},
            "paths": {"type": "array", "minItems": 1, "items": {"oneOf": [_PATH_GLOB, path_rule]}},
            "methods": {"type": "array", "items": _METHOD, "minItems": 1},
            "query": _QUERY,
            "addresses": _ADDRESSES,
            "action": {"enum": list(ACTIONS)},
        },
        ("action",),
        description="first matching rule wins; unmatched requests are denied; ports default to 80, 443 "
        "on allow rules and to every port on deny rules",
    )
    preset = _obj(
        PRESET_KEYS,
        {"preset": {"enum": list(preset_names())}, "addresses": _ADDRESSES},
        ("preset",),
        description="a named preset, expanded in place to its allow rules (openshell policy presets)",
    )
    auth = _obj(
        AUTH_KEYS,
        {
            "type": {"enum": list(AUTH_TYPES)},
            "token_from_secret": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"},
            "header": {"type": "string"},
            "param": {"type": "string"},
        },
        ("type", "token_from_secret"),
    )
    route = _obj(
        ROUTE_KEYS,
        {
            "name": {"type": "string"},
            "caller_pattern": {
                "type": "string",
                "default": ".*",
                "description": "regex, full match on the caller",
            },
            "match": _obj(
                MATCH_KEYS,
                {
                    "hosts": {"type": "array", "items": {"type": "string"}},
                    "paths": {"type": "array", "items": _PATH_GLOB},
                },
            ),
            "backend": _obj(
                BACKEND_KEYS,
                {"url": {"type": "string", "pattern": "^https?://"}, "auth": auth, "addresses": _ADDRESSES},
                ("url",),
            ),
            "strip_caller_auth": {"type": "boolean", "default": True},
        },
        ("backend",),
    )
    mode = {"enum": list(MODES), "default": "enforce"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/jupyter-openshell/jupyter-openshell/policy.schema.json",
        "title": "jupyter-openshell policy",
        "type": ["object", "null"],
        "additionalProperties": False,
        "properties": {
            "description": {"type": "string"},
            "mode": mode,
            "network": {
                "type": ["object", "null"],
                "additionalProperties": False,
                "properties": {
                    "mode": mode,
                    "egress": {"type": ["array", "null"], "items": {"oneOf": [rule, preset]}},
                    "limits": _obj(LIMIT_KEYS, {"max_body": {"oneOf": [
                        {"type": "integer", "minimum": MIN_BODY}, _SIZE["oneOf"][1]]}}),
                },
            },
            "inference": {
                "type": ["object", "null"],
                "additionalProperties": False,
                "properties": {"routes": {"type": ["array", "null"], "items": route}},
            },
            "filesystem": _obj(
                FS_KEYS + FS_NAME_KEYS,
                {
                    **{
                        k: {"type": ["array", "null"], "items": {"type": "string", "pattern": "^/"}}
                        for k in FS_KEYS
                    },
                    **{
                        k: {"type": ["array", "null"], "items": {"type": "string", "pattern": "^[^/*?[]"}}
                        for k in FS_NAME_KEYS
                    },
                },
            ),
            "process": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "user": {
                        "oneOf": [
                            {"type": "string", "pattern": r"^[a-z_][a-z0-9_-]{0,31}$"},
                            {"type": "integer", "minimum": 0},
                        ],
                        "default": "sandbox",
                    }
                },
            },
            "resources": _obj(
                RESOURCE_KEYS,
                {
                    "cpu": {
                        "oneOf": [
                            {"type": "number", "exclusiveMinimum": 0},
                            {"type": "string", "pattern": r"^\d+(\.\d+)?m?$"},
                        ],
                        "default": 1,
                    },
                    "memory": {**_SIZE, "default": "2Gi"},
                    "pids": {"type": "integer", "minimum": 1, "default": 256},
                    "disk": {"oneOf": [*_SIZE["oneOf"], {"type": "null"}], "default": None},
                    "timeout": {
                        "oneOf": [
                            {"type": "number", "exclusiveMinimum": 0},
                            {"type": "string", "pattern": r"^\d+(\.\d+)?\s*(s|m|h|d)?$"},
                            {"type": "null"},
                        ],
                        "default": None,
                    },
                },
            ),
            "gpu": {"type": "boolean", "default": False},
        },
    }
