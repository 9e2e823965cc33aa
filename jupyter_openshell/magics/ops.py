"""Operations on one sandbox's policy and flows, shared by the magics, the widgets and the kernel broker.

`PolicyOps` works on the host (state directory); `RemoteOps` does the same through the kernel broker from
inside an OpenShell kernel; `ops_for()` picks the right one. Every change is validated before it is written
(PolicyStore) and answered with a unified diff. It must never write a policy that does not validate.
"""

from __future__ import annotations

import difflib
import os
from typing import Any

BROKER_ENV = "OPENSHELL_KERNEL_BROKER"
ISSUE_FIELDS = ("file", "line", "column", "field", "message", "expected", "example")


class OpsError(RuntimeError):
    """A refused operation; `issues` are dicts with file/line/column/field/message/expected/example."""

    def __init__(self, message: str, issues: list[dict] | None = None):
        super().__init__(message)
        self.issue_dicts = issues or []


def issue_dicts(exc: BaseException) -> list[dict]:
    if getattr(exc, "issue_dicts", None):
        return list(exc.issue_dicts)  # type: ignore[attr-defined]
    return [{k: getattr(i, k, None) for k in ISSUE_FIELDS} for i in getattr(exc, "issues", ())]


def diff(old: str, new: str, name: str) -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"{name} (before)", f"{name} (after)"
    )
    return "".join(lines)


class PolicyOps:
    """Policy and flows of sandbox `name` ("default" is the host caller's policy)."""

    def __init__(self, name: str):
        self.name = name

    def _store(self) -> Any:
        from jupyter_openshell.paths import state_dir
        from jupyter_openshell.policy import PolicyStore

        return PolicyStore(state_dir())

    def _path(self) -> Any:
        from jupyter_openshell.paths import sub

        return sub("policies") / f"{self.name}.yaml"

    def text(self) -> str:
        path = self._path()
        if not path.exists():
            raise OpsError(f"sandbox {self.name!r} has no policy file ({path}); create the sandbox first")
        return path.read_text()

    def show(self) -> dict:
        """{"name", "version", "yaml" (the file), "effective" (the egress rules with presets
        expanded, or None when the file uses no preset)}."""
        from jupyter_openshell.policy import effective_yaml, parse_policy

        text = self.text()
        policy = parse_policy(text, source=str(self._path()))
        return {
            "name": self.name,
            "version": policy.version,
            "yaml": text,
            "effective": effective_yaml(policy) if any(r.preset for r in policy.egress) else None,
        }

    def put(self, text: str, source: str | None = None) -> dict:
        """Validate, write (hot reload), return {"version", "diff", "warnings"}."""
        from jupyter_openshell.policy import PolicyError

        old = self._path().read_text() if self._path().exists() else ""
        try:
            policy = self._store().put(self.name, text)
        except PolicyError as exc:
            raise OpsError(str(exc), issue_dicts(exc)) from None
        return {
            "name": self.name,
            "version": policy.version,
            "diff": diff(old, text, f"{self.name}.yaml"),
            "warnings": [str(w) for w in policy.warnings],
            "in_force": self._reload(policy.version),
        }

    def _reload(self, version: str) -> bool:
        """Make the proxy load the new file now (not at its next poll); True once that version is in force."""
        from jupyter_openshell.proxy import ProxyClient, ProxyError

        try:
            policies = ProxyClient().reload().get("policies") or {}
        except ProxyError:
            return False  # the proxy is not running: it reads the file when it starts
        return (policies.get(self.name) or {}).get("version") == version

    def rule_for(self, method: str, url: str) -> dict:
        from jupyter_openshell.policy import BadRequest, rule_for

        try:
            return dict(rule_for(method, url))
        except BadRequest as exc:
            raise OpsError(f"{method} {url}: {exc}") from None

    def _edit(self, change: Any) -> dict:
        from jupyter_openshell.policy import PolicyError

        try:
            text = change(self.text())
        except PolicyError as exc:
            raise OpsError(str(exc), issue_dicts(exc)) from None
        except ValueError as exc:
            raise OpsError(str(exc)) from None
        return self.put(text)

    def allow(self, method: str, url: str) -> dict:
        """Add the allow rule for METHOD URL (above a final default deny): METHOD "" = GET and HEAD,
        "*" = any; a `*`/`**` in URL's path is a glob (`https://host/**` = the whole host)."""
        from jupyter_openshell.policy import add_rule

        rule = self.rule_for(method, url)
        result = self._edit(lambda text: add_rule(text, rule))
        result["rule"] = rule
        return result

    def allow_preset(self, name: str) -> dict:
        """Add `- preset: NAME` (above a final default deny); the result's "rules" are its expansion."""
        from jupyter_openshell.policy import add_rule, expand_preset, presets

        if name not in presets():
            raise OpsError(f"unknown preset {name!r}: one of {', '.join(presets())}")
        result = self._edit(lambda text: add_rule(text, {"preset": name}))
        result["rule"] = {"preset": name}
        result["rules"] = expand_preset(name)
        return result

    def deny(self, method: str, url: str) -> dict:
        """Add a deny rule for METHOD URL in front of every other egress rule."""
        from jupyter_openshell.policy import add_rule

        rule = {**self.rule_for(method, url), "action": "deny"}
        result = self._edit(lambda text: add_rule(text, rule, position="start"))
        result["rule"] = rule
        return result

    def mode(self, mode: str) -> dict:
        from jupyter_openshell.policy import set_mode

        return self._edit(lambda text: set_mode(text, mode))

    def explain(self, method: str, url: str) -> dict:
        """How the current policy decides METHOD URL: action, rule, reason, and a hint to allow it."""
        from jupyter_openshell.policy import BadRequest, RequestInfo, parse_policy

        policy = parse_policy(self.text(), source=f"{self.name}.yaml")
        try:
            decision = policy.compile().decide(RequestInfo.from_url(method.upper(), url))
        except BadRequest as exc:
            raise OpsError(f"{method} {url}: {exc}") from None
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
        return [
            {"version": e.version, "ts_ms": e.ts_ms, "applied": _iso(e.ts_ms), "yaml": e.text()}
            for e in self._store().history(self.name)
        ]

    def rollback(self, version: str) -> dict:
        old = self.text()
        try:
            policy = self._store().rollback(self.name, version)
        except LookupError as exc:
            raise OpsError(str(exc)) from None
        return {
            "name": self.name,
            "version": policy.version,
            "diff": diff(old, self.text(), f"{self.name}.yaml"),
            "warnings": [],
            "in_force": self._reload(policy.version),
        }

    def flows(self, since: float = 0, limit: int = 200) -> list[dict]:
        """Records of the sandbox now called `name` (not of an earlier one of that name), oldest first."""
        from jupyter_openshell.proxy import ProxyClient

        return ProxyClient().flows(sandbox=self.name, since=since, limit=limit)

    def capabilities(self) -> dict:
        """What may be done here: from the host, everything (inside a kernel the broker answers)."""
        return {"sandbox": self.name, "policy_edits": True, "inside_kernel": False}

    def flow_page(self, after: int | None = None, limit: int = 200) -> dict:
        """{"flows", "next_after"}: the current instance's records after the cursor `after` (a seq; None:
        the newest `limit`); pass `next_after` back to get only later ones."""
        from jupyter_openshell.proxy import ProxyClient

        return ProxyClient().flow_page(sandbox=self.name, after=after, limit=limit)


def _iso(ts_ms: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ts_ms / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class RemoteOps:
    """The same operations, inside an OpenShell kernel, through the host-side broker of its sandbox."""

    def __init__(self, path: str, name: str):
        self.path, self.name = path, name

    def __getattr__(self, op: str) -> Any:
        from jupyter_openshell.kernel.broker import BrokerError, call

        def remote(*args: Any, **kwargs: Any) -> Any:
            params = dict(zip(_PARAMS.get(op, ()), args, strict=False), **kwargs)
            try:
                return call(self.path, op, **params)
            except BrokerError as exc:
                raise OpsError(str(exc), exc.issue_dicts) from None

        return remote


_PARAMS = {
    "put": ("text", "source"),
    "allow": ("method", "url"),
    "allow_preset": ("name",),
    "deny": ("method", "url"),
    "rule_for": ("method", "url"),
    "explain": ("method", "url"),
    "mode": ("mode",),
    "rollback": ("version",),
    "flows": ("since", "limit"),
    "flow_page": ("after", "limit"),
}


def inside_sandbox() -> bool:
    return bool(os.environ.get(BROKER_ENV))


def ops_for(name: str | None = None) -> PolicyOps | RemoteOps:
    """Inside an OpenShell kernel: its own sandbox (any other name is refused); else the named sandbox."""
    if inside_sandbox():
        own = os.environ.get("OPENSHELL_SANDBOX", "")
        if name and name != own:
            raise OpsError(
                f"this kernel runs in sandbox {own!r}; it can only see its own policy, not {name!r}"
            )
        return RemoteOps(os.environ[BROKER_ENV], own)
    return PolicyOps(name or "default")
