"""The error of the service layer: a refused operation, with the policy's issues when a policy was refused.

It must never carry a secret: messages name files, fields and rules, never header values.
"""

from __future__ import annotations

ISSUE_FIELDS = ("file", "line", "column", "field", "message", "expected", "example")


class ServiceError(RuntimeError):
    """A refused operation; `issue_dicts` are dicts with file/line/column/field/message/expected/example."""

    def __init__(self, message: str, issues: list[dict] | None = None):
        super().__init__(message)
        self.issue_dicts = issues or []


def issue_dicts(exc: BaseException) -> list[dict]:
    """The issues of a refusal: a `ServiceError`'s, or a `PolicyError`'s `.issues` as dicts."""
    if getattr(exc, "issue_dicts", None):
        return list(exc.issue_dicts)  # type: ignore[attr-defined]
    return [{k: getattr(i, k, None) for k in ISSUE_FIELDS} for i in getattr(exc, "issues", ())]
