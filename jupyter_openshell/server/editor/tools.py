"""What the policy editor of the JupyterLab extension asks the server: validate text as it is typed, list
presets and insert one into a text, offer the rules that would allow one request (narrowest first), each as
YAML and as the whole policy with that rule staged, and the policy format reference.

Pure functions over the policy engine; the answers are JSON-ready dicts. It must never write a policy:
applying a staged policy goes through PUT /openshell/api/policies/<name>, the one write path.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from ..base import ApiError

MAX_POLICY_CHARS = 1 << 20
DOCS = {"policy-format": "policy-format.md"}
_DID_YOU_MEAN = re.compile(r"did you mean '([^']*)'\?")


def issue_dict(issue: Any) -> dict:
    """An `Issue` as JSON, with its "did you mean" suggestion (if the message has one) as its own field."""
    found = _DID_YOU_MEAN.search(issue.message)
    return {
        "line": issue.line,
        "column": issue.column,
        "field": issue.field,
        "message": issue.message,
        "expected": issue.expected,
        "example": issue.example,
        "severity": issue.severity,
        "did_you_mean": found.group(1) if found else None,
    }


def validate(text: str) -> dict:
    """{"valid", "version", "issues": [...]}; `issues` holds errors and warnings (their `severity`), sorted
    by position. Line and column are 1-based (0 = the whole document)."""
    from jupyter_openshell.policy import PolicyError, parse_policy

    if len(text) > MAX_POLICY_CHARS:
        raise ApiError(413, f"policy text is longer than {MAX_POLICY_CHARS} characters")
    try:
        policy = parse_policy(text, source="policy")
    except PolicyError as exc:
        found = [*exc.issues, *exc.warnings]
        valid, version = False, None
    else:
        found = list(policy.warnings)
        valid, version = True, policy.version
    issues = sorted((issue_dict(i) for i in found), key=lambda i: (i["line"], i["column"]))
    return {"valid": valid, "version": version, "issues": issues}


def presets() -> dict:
    """{"presets": [{"name", "description", "yaml"}]} from `jupyter_openshell.policy.presets()`."""
    try:
        from jupyter_openshell.policy import presets as policy_presets
    except ImportError:
        raise ApiError(
            501, "policy presets are not available in this version of jupyter-openshell "
            "(jupyter_openshell.policy.presets is missing)"
        ) from None
    return {
        "presets": [
            {"name": name, "description": p.description, "yaml": p.yaml}
            for name, p in sorted(policy_presets().items())
        ]
    }


def insert_preset(name: str, text: str) -> dict:
    """{"name", "policy"}: `text` with the preset's rules inserted above its final default deny."""
    from jupyter_openshell.policy import PolicyError, add_rule
    from jupyter_openshell.services.errors import issue_dicts

    try:
        from jupyter_openshell.policy import expand_preset
    except ImportError:
        raise ApiError(
            501, "policy presets are not available in this version of jupyter-openshell "
            "(jupyter_openshell.policy.expand_preset is missing)"
        ) from None
    try:
        rules = expand_preset(name)
    except (LookupError, ValueError) as exc:
        raise ApiError(404, f"no preset named {name!r}: {exc}") from None
    for rule in rules:
        try:
            text = add_rule(text, dict(rule))
        except PolicyError as exc:
            raise ApiError(400, f"the preset cannot be inserted: {exc}", issue_dicts(exc)) from None
    return {"name": name, "policy": text}


def docs_page(name: str) -> dict:
    """{"name", "markdown"} of a documentation page the UI links to (only those in DOCS)."""
    if name not in DOCS:
        raise ApiError(404, f"no documentation page {name!r}; pages: {', '.join(sorted(DOCS))}")
    for directory in _docs_dirs():
        path = directory / DOCS[name]
        if path.is_file():
            return {"name": name, "markdown": path.read_text()}
    raise ApiError(404, f"{DOCS[name]} is not installed with jupyter-openshell")


def _docs_dirs() -> list[Path]:
    """The checkout's docs/ (editable install), then the copy installed under sys.prefix."""
    checkout = Path(__file__).resolve().parents[3] / "docs"
    return [checkout, Path(sys.prefix) / "share" / "jupyter-openshell" / "docs"]


def _variants(method: str, url: str) -> list[dict]:
    from jupyter_openshell.policy import BadRequest

    try:
        from jupyter_openshell.policy import rule_variants
    except ImportError:
        rule_variants = None
    try:
        if rule_variants is not None:
            found = rule_variants(method, url)
            return [{"label": v.label, "rule": dict(v.rule), "yaml": v.yaml} for v in found]
        # until rule_variants lands: the exact-request rule alone
        from jupyter_openshell.policy import rule_for, rule_yaml

        rule = rule_for(method, url)
        return [{"label": "this exact request", "rule": rule, "yaml": rule_yaml(rule)}]
    except BadRequest as exc:
        raise ApiError(400, f"{method} {url}: {exc}") from None


def variants(method: str, url: str, current: str | None) -> dict:
    """{"method", "url", "variants": [{"label", "rule", "yaml", "policy"?}]}, narrowest first; with the
    `current` policy text, each variant's `policy` is that text with the rule inserted above its final
    default deny (comments kept), ready for review and PUT."""
    from jupyter_openshell.policy import PolicyError, add_rule

    if not isinstance(method, str) or not method.strip() or not isinstance(url, str) or not url:
        raise ApiError(
            400,
            "method and url are required",
            [{"field": "method", "message": "an HTTP method", "example": "GET"},
             {"field": "url", "message": "an absolute http(s) URL", "example": "https://pypi.org/simple/"}],
        )
    found = _variants(method.strip().upper(), url)
    if current is not None:
        for variant in found:
            try:
                variant["policy"] = add_rule(current, variant["rule"])
            except (PolicyError, ValueError) as exc:
                raise ApiError(409, f"the sandbox's current policy cannot take the rule: {exc}") from None
    return {"method": method.strip().upper(), "url": url, "variants": found}
