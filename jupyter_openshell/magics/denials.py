"""Readable notices for requests the proxy denied during a cell: what, which rule, and how to allow it
where the user is.

Both paths use it: `%%sandbox` cells on the host, and every cell of an OpenShell kernel (it asks the
kernel broker). One notice per distinct request (method + URL) with a count, shown before the cell's
traceback when the cell failed (the traceback then shortened: the notice says why). The hint is one that
works there: `%policy allow ...` on the host or where the kernelspec enables policy_edits; inside a kernel
that cannot change its own policy, the host-side command (`openshell sandbox allow ...`) and a host
kernel's `%policy` / PolicyPanel. It must never hide a denial because a library swallowed the 403, and
never offer a command that cannot work where it is shown.
"""

from __future__ import annotations

import contextlib
import html
import time
from typing import Any

from IPython.display import display

from jupyter_openshell.flowtext import (
    Denial,
    allow_request,
    group_denials,
    host_allow_command,
    rule_of,
    times,
    url_of,
)

__all__ = ["DenialWatcher", "notice", "url_of"]


def _hints(denial: Denial, name: str | None, sandbox: str, edits: bool) -> list[tuple[str, str]]:
    """(words, command) lines of the hint; command may be empty."""
    magic = "%policy allow {} {}".format(*allow_request(denial.method, denial.url))
    if name or edits:  # on the host (%%sandbox NAME), or a kernel allowed to change its own policy
        return [("to allow it, run: ", magic + (f" {name}" if name else ""))]
    return [
        ("this kernel cannot change its own policy (its kernelspec does not set policy_edits); "
         "to allow it,", ""),
        ("  in a terminal on the host: ", host_allow_command(sandbox, denial.method, denial.url)),
        ("  or in a host Python kernel: ", f"{magic} {sandbox}"),
        ("  or open its policy there: ", f"PolicyPanel({sandbox!r})"),
    ]


def notice(denial: Denial, name: str | None, sandbox: str = "", edits: bool = True) -> dict[str, str]:
    """The text/plain and text/html of one denial's notice. `name`: the sandbox a host-side %%sandbox
    cell ran in; else a notice inside sandbox `sandbox`'s own kernel, which may change its policy only
    with `edits`."""
    rule, reason = rule_of(denial.record), denial.record.get("reason") or ""
    what = f"{denial.method} {denial.url}"
    count = f" (denied {times(denial.count)})" if denial.count > 1 else ""
    hints = _hints(denial, name, sandbox, edits)
    text = f"OpenShell denied {what}{count}\n  rule: {rule}" + (f"\n  reason: {reason}" if reason else "")
    text += "".join(f"\n  {words}{command}" for words, command in hints)
    e = html.escape
    hint_html = "<br>".join(
        e(words.strip()) + (f" <code>{e(command)}</code>" if command else "") for words, command in hints
    )
    markup = (
        '<div style="border-left:4px solid #c62828;padding:4px 8px;background:#fdecea">'
        f"<b>OpenShell denied</b> <code>{e(what)}</code>{e(count)}<br>rule: <code>{e(rule)}</code>"
        + (f"<br>reason: {e(reason)}" if reason else "")
        + f"<br>{hint_html}</div>"
    )
    return {"text/plain": text, "text/html": markup}


class DenialWatcher:
    """Shows each new denial of one sandbox (its current instance) once, paging the flow log by `seq`;
    `ops.flow_page(after, limit)` and `ops.capabilities()` (PolicyService or RemoteOps). `name`: the sandbox
    of a host-side %%sandbox cell; None inside an OpenShell kernel (its own sandbox)."""

    def __init__(self, ops: Any, name: str | None):
        self.ops, self.name = ops, name
        self.since = 0.0  # the first cell's start: used only while no cursor could be taken
        self.after: int | None = None
        self._edits: bool | None = None

    def mark(self, ts: float) -> None:
        """A cell starts: the first time, take the log's cursor (denials before it are not shown)."""
        if not self.since:
            self.since = ts
        if self.after is None:
            with contextlib.suppress(Exception):  # the proxy may be down: check() uses the start time
                self.after = self.ops.flow_page(limit=0)["next_after"]

    def _may_edit(self) -> bool:
        if self._edits is None:
            try:
                self._edits = bool(self.ops.capabilities().get("policy_edits"))
            except Exception:  # a broker without the operation: assume the safe answer
                self._edits = False
        return self._edits

    def check(self) -> list[dict]:
        """Display a notice per distinct new denial; returns the new denied records."""
        try:
            page = self.ops.flow_page(after=self.after, limit=500)
        except Exception:  # the proxy may be down; the cell's own error says enough then
            return []
        records = page["flows"]
        if self.after is None:
            records = [r for r in records if float(r.get("ts") or 0) >= self.since]
        self.after = page["next_after"]
        fresh = [r for r in records if r.get("decision") == "deny"]
        denials = group_denials(fresh)
        if denials:
            edits = self.name is not None or self._may_edit()
            sandbox = str(getattr(self.ops, "name", "") or "")
            for denial in denials:
                display(notice(denial, self.name, sandbox, edits), raw=True)
        return fresh

    def before_traceback(self, shell: Any, etype: type, value: BaseException, tb: Any,
                         tb_offset: int | None = None) -> Any:
        """IPython custom exception handler: the cell's denials first, then its traceback, shortened to
        the exception when a denial explains it (IPython then says that `%tb` shows the whole)."""
        shown = self.check()
        if not shown and isinstance(value, OSError):  # the proxy's record may lag
            time.sleep(0.1)
            shown = self.check()
        if not shown:
            return shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset, exception_only=True)  # "use %tb ..."
        return None
