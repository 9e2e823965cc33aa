"""Policies of the caller's sandboxes over REST: read, validate-and-apply (hot reload), history.

A thin layer over `jupyter_openshell.magics.ops.PolicyOps` (the same operations as `%policy`). It must never
write a policy that did not validate.
"""

from __future__ import annotations

from traitlets.config import LoggingConfigurable

from jupyter_openshell.magics.ops import OpsError, PolicyOps

from ..base import ApiError


def _ops(name: str) -> PolicyOps:
    return PolicyOps(name)


class PolicyManager(LoggingConfigurable):
    def get(self, name: str) -> dict:
        try:
            return _ops(name).show()
        except OpsError as exc:
            raise ApiError(404, str(exc)) from None

    def put(self, name: str, text: str) -> dict:
        try:
            result = _ops(name).put(text, source="policy")
        except OpsError as exc:
            raise ApiError(400, str(exc), exc.issue_dicts) from None
        return {k: result[k] for k in ("name", "version", "warnings", "in_force", "diff")}

    def history(self, name: str) -> list[dict]:
        return _ops(name).history()
