"""Error types of the policy engine: validation issues, `PolicyError`, and `BadRequest`.

An `Issue` says where (file, line, column, field path), what is wrong, what was expected and an
example fix. This module only formats; it must never read files or decide anything.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Issue:
    """One validation finding. `line` and `column` are 1-based (0 when unknown)."""

    file: str
    line: int
    column: int
    field: str
    message: str
    expected: str = ""
    example: str = ""
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        head = f"{where}: {self.severity}: {self.field or '<document>'}: {self.message}"
        lines = [head]
        if self.expected:
            lines.append(f"    expected: {self.expected}")
        if self.example:
            example = self.example.replace("\n", "\n              ")
            lines.append(f"    example:  {example}")
        return "\n".join(lines)


class PolicyError(ValueError):
    """A policy document is invalid. `.issues` lists every error found (several at once)."""

    def __init__(self, issues: list[Issue] | tuple[Issue, ...], warnings: tuple[Issue, ...] = ()):
        self.issues: tuple[Issue, ...] = tuple(issues)
        self.warnings: tuple[Issue, ...] = tuple(warnings)
        super().__init__(self.report())

    def report(self) -> str:
        n = len(self.issues)
        source = self.issues[0].file if self.issues else "<policy>"
        head = f"{source}: {n} error{'s' if n != 1 else ''} in policy"
        body = [str(i) for i in (*self.issues, *self.warnings)]
        return "\n".join([head, *body])

    def __str__(self) -> str:
        return self.report()


class BadRequest(ValueError):
    """A request that cannot be evaluated safely (ambiguous or malformed); answer it with 400."""

    status = 400

    def __init__(self, message: str, part: str = ""):
        self.part = part  # "host" | "path" | "method" | "query" | "header" | ""
        super().__init__(message)
