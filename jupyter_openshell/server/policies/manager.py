"""Policies of the caller's sandboxes over REST: read, validate-and-apply (hot reload), history.

Built on `jupyter_openshell.policy.PolicyStore`. It must never write a policy that did not validate.
"""

from __future__ import annotations

from typing import Any

from traitlets.config import LoggingConfigurable

from ..base import ApiError
from ..sandboxes.manager import info_dict, policy_issues


def _store() -> Any:
    from jupyter_openshell.paths import state_dir
    from jupyter_openshell.policy import PolicyStore

    return PolicyStore(state_dir())


class PolicyManager(LoggingConfigurable):
    def get(self, name: str) -> dict:
        from jupyter_openshell.paths import sub

        path = sub("policies") / f"{name}.yaml"
        if not path.exists():
            raise ApiError(404, f"sandbox {name!r} has no policy yet")
        policy = _store().get(name)
        return {"name": name, "version": getattr(policy, "version", None), "yaml": path.read_text()}

    def put(self, name: str, text: str) -> dict:
        from jupyter_openshell.policy import PolicyError

        try:
            policy = _store().put(name, text)
        except PolicyError as exc:
            raise ApiError(400, str(exc), policy_issues(exc)) from None
        return {"name": name, "version": policy.version, "warnings": [str(w) for w in policy.warnings]}

    def history(self, name: str) -> list[dict]:
        return [_entry(e) for e in _store().history(name)]


def _entry(entry: Any) -> dict:
    return info_dict(entry)
