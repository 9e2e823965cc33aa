"""The policy engine: parse, validate and compile egress/inference/sandbox policies, and decide requests.

Small public API re-exported from private modules (see docs/ARCHITECTURE.md). Everything here is
pure and fast except `load_policy_file` and `PolicyStore`, which touch only the files they are given.
It must never import mitmproxy or Jupyter.
"""

from __future__ import annotations

from ._body import body_override_methods, may_carry_override
from ._compile import NO_RULE, CompiledPolicy, Decision, RequestInfo
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
    is_override_param,
    normalize_host,
    normalize_method,
    normalize_path,
    override_methods,
    parse_query,
    path_forms,
    same_authority,
    split_host_port,
    strip_params,
)
from ._parse import load_policy_file, parse_policy
from ._presets import Preset, expand_preset, presets
from ._rules import RuleVariant, effective_yaml, rule_for, rule_variants, rule_yaml
from ._schema import json_schema
from ._store import HistoryEntry, PolicyStore
from ._suggest import suggest

__all__ = [
    "NO_RULE",
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
    "Preset",
    "Process",
    "RequestInfo",
    "Resources",
    "RuleVariant",
    "add_rule",
    "body_override_methods",
    "effective_yaml",
    "expand_preset",
    "is_override_param",
    "json_schema",
    "load_policy_file",
    "may_carry_override",
    "normalize_host",
    "normalize_method",
    "normalize_path",
    "override_methods",
    "parse_policy",
    "parse_query",
    "path_forms",
    "presets",
    "rule_for",
    "rule_variants",
    "rule_yaml",
    "same_authority",
    "set_mode",
    "split_host_port",
    "strip_params",
    "suggest",
]
