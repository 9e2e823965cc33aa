"""The policy of one sandbox (or "default": the host caller's), for the CLI, the magics, the widgets, the
kernel broker and the REST API: show, put, allow, deny, presets, mode, explain, history, rollback, flows.

Every change goes one way, whatever the backend: validated (a refusal is a `ServiceError` with the policy's
issues: file, line, field, what is expected), then made current through the sandbox's backend
(`Backend.set_policy`: the policy store, `policy.PolicyStore`, whose files the proxy watches; a Kubernetes
sandbox's in-cluster proxy also reads its ConfigMap), then the proxy is asked to reload so that the next
request meets it. Every answer to a change carries a unified diff. It must never write a policy that does
not validate.
"""

from __future__ import annotations

import datetime
import difflib
from typing import Any

from ..names import HOST_CALLER
from .errors import ServiceError, issue_dicts

__all__ = ["PolicyService", "ServiceError", "diff", "issue_dicts"]


def diff(old: str, new: str, name: str) -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"{name} (before)", f"{name} (after)"
    )
    return "".join(lines)


def _iso(ts_ms: int) -> str:
    return datetime.datetime.fromtimestamp(ts_ms / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class PolicyService:
    """Policy and flows of sandbox `name` ("default" is the host caller's policy)."""

    def __init__(self, name: str):
        self.name = name

    def _store(self) -> Any:
        from ..policy import PolicyStore

        return PolicyStore()

    def _path(self) -> Any:
        try:
            return self._store().path(self.name)
        except ValueError as exc:
            raise ServiceError(str(exc)) from None

    def text(self) -> str:
        path = self._path()
        if not path.exists():
            raise ServiceError(f"sandbox {self.name!r} has no policy file ({path}); create the sandbox first")
        return path.read_text()

    def show(self) -> dict:
        """{"name", "version", "yaml" (the file), "effective" (the egress rules with presets
        expanded, or None when the file uses no preset)}."""
        from ..policy import effective_yaml, parse_policy

        text = self.text()
        policy = parse_policy(text, source=str(self._path()))
        return {
            "name": self.name,
            "version": policy.version,
            "yaml": text,
            "effective": effective_yaml(policy) if any(r.preset for r in policy.egress) else None,
        }

    def _apply(self, text: str) -> Any:
        """Validate `text`, then make it current: through the sandbox's backend when there is a sandbox of
        that name, else in the store alone (the host caller, a sandbox's leftover policy)."""
        from ..policy import PolicyError, parse_policy
        from ..runtime import SandboxError, backend_of

        path = self._path()
        try:
            parse_policy(text, source=str(path))
        except PolicyError as exc:
            raise ServiceError(str(exc), issue_dicts(exc)) from None
        try:
            backend = backend_of(self.name) if self.name != HOST_CALLER else None
        except SandboxError:
            backend = None
        try:
            if backend is not None:
                return backend.set_policy(self.name, text)
            return self._store().put(self.name, text)
        except (PolicyError, SandboxError) as exc:
            raise ServiceError(str(exc), issue_dicts(exc.__cause__ or exc)) from None

    def put(self, text: str, source: str | None = None) -> dict:
        """Validate, make current (hot reload), return {"name", "version", "diff", "warnings", "in_force"}.
        (`source` names where the text came from; reports name the policy file.)"""
        old = self._path().read_text() if self._path().exists() else ""
        policy = self._apply(text)
        return {
            "name": self.name,
            "version": policy.version,
            "diff": diff(old, text, f"{self.name}.yaml"),
            "warnings": [str(w) for w in policy.warnings],
            "in_force": self._reload(policy.version),
        }

    def _reload(self, version: str) -> bool:
        """Make the proxy load the new file now (not at its next poll); True once that version is in force."""
        from .proxy import reload

        policies = reload()
        if policies is None:
            return False  # the proxy is not running: it reads the file when it starts
        return (policies.get(self.name) or {}).get("version") == version

    def rule_for(self, method: str, url: str) -> dict:
        from ..policy import BadRequest, rule_for

        try:
            return dict(rule_for(method, url))
        except BadRequest as exc:
            raise ServiceError(f"{method} {url}: {exc}") from None

    def _edit(self, change: Any) -> dict:
        from ..policy import PolicyError

        try:
            text = change(self.text())
        except PolicyError as exc:
            raise ServiceError(str(exc), issue_dicts(exc)) from None
        except ValueError as exc:
            raise ServiceError(str(exc)) from None
        return self.put(text)

    def allow(self, method: str, url: str) -> dict:
        """Add the allow rule for METHOD URL (above a final default deny): METHOD "" = GET and HEAD,
        "*" = any; a `*`/`**` in URL's path is a glob (`https://host/**` = the whole host)."""
        from ..policy import add_rule

        rule = self.rule_for(method, url)
        result = self._edit(lambda text: add_rule(text, rule))
        result["rule"] = rule
        return result

    def allow_preset(self, name: str) -> dict:
        """Add `- preset: NAME` (above a final default deny); the result's "rules" are its expansion."""
        from ..policy import add_rule, expand_preset, presets

        if name not in presets():
            raise ServiceError(f"unknown preset {name!r}: one of {', '.join(presets())}")
        result = self._edit(lambda text: add_rule(text, {"preset": name}))
        result["rule"] = {"preset": name}
        result["rules"] = expand_preset(name)
        return result

    def deny(self, method: str, url: str) -> dict:
        """Add a deny rule for METHOD URL in front of every other egress rule."""
        from ..policy import add_rule

        rule = {**self.rule_for(method, url), "action": "deny"}
        result = self._edit(lambda text: add_rule(text, rule, position="start"))
        result["rule"] = rule
        return result

    def mode(self, mode: str) -> dict:
        from ..policy import set_mode

        return self._edit(lambda text: set_mode(text, mode))

    def explain(self, method: str, url: str) -> dict:
        """How the current policy decides METHOD URL: action, rule, reason, and a hint to allow it."""
        from ..policy import BadRequest, RequestInfo, parse_policy

        policy = parse_policy(self.text(), source=f"{self.name}.yaml")
        try:
            decision = policy.compile().decide(RequestInfo.from_url(method.upper(), url))
        except BadRequest as exc:
            raise ServiceError(f"{method} {url}: {exc}") from None
        out = {
            "request": f"{method.upper()} {url}",
            "decision": decision.action,
            "rule": decision.rule,
            "reason": decision.reason,
            "policy_version": decision.policy_version,
        }
        if decision.variants:
            out["allow_with"] = decision.variants[0].command
            out["or"] = "; ".join(f"{v.command} ({v.label})" for v in decision.variants[1:])
        return out

    def history(self) -> list[dict]:
        try:
            entries = self._store().history(self.name)
        except ValueError as exc:
            raise ServiceError(str(exc)) from None
        return [{"version": e.version, "ts_ms": e.ts_ms, "applied": _iso(e.ts_ms), "yaml": e.text()}
                for e in entries]

    def version_text(self, version: str) -> str:
        """The text of an applied version (a prefix of at least 4 hex digits); ServiceError if unknown."""
        try:
            return self._store().entry(self.name, version).text()
        except (LookupError, ValueError) as exc:
            raise ServiceError(exc.args[0]) from None

    def diff_from(self, version: str) -> str:
        """Unified diff from an applied version to the current policy."""
        try:
            return self._store().diff(self.name, version)
        except (LookupError, ValueError) as exc:
            raise ServiceError(exc.args[0]) from None

    def rollback(self, version: str) -> dict:
        """Apply an earlier version again (as a change: validated, through the backend, hot)."""
        return self.put(self.version_text(version))

    def flows(self, since: float = 0, limit: int = 200) -> list[dict]:
        """Records of the sandbox now called `name` (not of an earlier one of that name), oldest first."""
        from .flows import flows

        return flows(self.name, since=since, limit=limit)

    def capabilities(self) -> dict:
        """What may be done here: from the host, everything (inside a kernel the broker answers)."""
        return {"sandbox": self.name, "policy_edits": True, "inside_kernel": False}

    def flow_page(self, after: int | None = None, limit: int = 200) -> dict:
        """{"flows", "next_after"}: the current instance's records after the cursor `after` (a seq; None:
        the newest `limit`); pass `next_after` back to get only later ones."""
        from .flows import flow_page

        return flow_page(self.name, after=after, limit=limit)
