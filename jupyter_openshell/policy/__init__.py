"""The policy engine: parse, validate and compile egress/inference/sandbox policies, and decide requests.

Small public API re-exported from private modules (see docs/ARCHITECTURE.md). Everything here is
pure and fast except `load_policy_file` and `PolicyStore`, which touch only the files they are given.
It must never import mitmproxy or Jupyter.
"""

from __future__ import annotations

from .._lazy import lazy_exports

TYPE_CHECKING = False
if TYPE_CHECKING:
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
        with_version,
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

_EXPORTS = {
    "AuthSpec": "._model",
    "Backend": "._model",
    "BadRequest": "._errors",
    "CompiledPolicy": "._compile",
    "Decision": "._compile",
    "EgressRule": "._model",
    "Filesystem": "._model",
    "HistoryEntry": "._store",
    "HostInfo": "._normalize",
    "InferenceRoute": "._model",
    "Issue": "._errors",
    "NO_RULE": "._compile",
    "OVERRIDE_HEADERS": "._normalize",
    "OVERRIDE_PARAMS": "._normalize",
    "PathRule": "._model",
    "Policy": "._model",
    "PolicyError": "._errors",
    "PolicyStore": "._store",
    "Preset": "._presets",
    "Process": "._model",
    "RequestInfo": "._compile",
    "Resources": "._model",
    "RuleVariant": "._rules",
    "add_rule": "._edit",
    "body_override_methods": "._body",
    "effective_yaml": "._rules",
    "expand_preset": "._presets",
    "is_override_param": "._normalize",
    "json_schema": "._schema",
    "load_policy_file": "._parse",
    "may_carry_override": "._body",
    "normalize_host": "._normalize",
    "normalize_method": "._normalize",
    "normalize_path": "._normalize",
    "override_methods": "._normalize",
    "parse_policy": "._parse",
    "parse_query": "._normalize",
    "path_forms": "._normalize",
    "presets": "._presets",
    "rule_for": "._rules",
    "rule_variants": "._rules",
    "rule_yaml": "._rules",
    "same_authority": "._normalize",
    "set_mode": "._edit",
    "split_host_port": "._normalize",
    "strip_params": "._normalize",
    "suggest": "._suggest",
    "with_version": "._model",
}
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
    "with_version",
]
__getattr__ = lazy_exports(__name__, _EXPORTS)
