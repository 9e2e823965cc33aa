"""The policy engine: parse, validate and compile egress/inference/sandbox policies, and decide requests.

Small public API re-exported from private modules (see docs/ARCHITECTURE.md). Everything here is
pure and fast except `load_policy_file` and `PolicyStore`, which touch only the files they are given.
It must never import mitmproxy or Jupyter.
"""

from __future__ import annotations

from ._compile import CompiledPolicy, Decision, RequestInfo
from ._edit import add_rule, set_mode
from ._errors import BadRequest, Issue, PolicyError
from ._model import (
    AuthSpec,
    Backend,
    EgressRule,
    Filesystem,
    InferenceRoute,
    PathRule,
    Policy,
    Process,
    Resources,
)
from ._normalize import (
    OVERRIDE_HEADERS,
    OVERRIDE_PARAMS,
    HostInfo,
    normalize_host,
    normalize_method,
    normalize_path,
    override_methods,
    parse_query,
    same_authority,
    split_host_port,
    strip_params,
)
from ._parse import load_policy_file, parse_policy
from ._rules import rule_for, rule_yaml
from ._schema import json_schema
from ._store import HistoryEntry, PolicyStore
from ._suggest import suggest

__all__ = [
    "OVERRIDE_HEADERS",
    "OVERRIDE_PARAMS",
    "AuthSpec",
    "Backend",
    "BadRequest",
    "CompiledPolicy",
    "Decision",
    "EgressRule",
    "Filesystem",
    "HistoryEntry",
    "HostInfo",
    "InferenceRoute",
    "Issue",
    "PathRule",
    "Policy",
    "PolicyError",
    "PolicyStore",
    "Process",
    "RequestInfo",
    "Resources",
    "add_rule",
    "json_schema",
    "load_policy_file",
    "normalize_host",
    "normalize_method",
    "normalize_path",
    "override_methods",
    "parse_policy",
    "parse_query",
    "rule_for",
    "rule_yaml",
    "same_authority",
    "set_mode",
    "split_host_port",
    "strip_params",
    "suggest",
]
