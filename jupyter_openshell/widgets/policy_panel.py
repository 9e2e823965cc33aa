"""`PolicyPanel`: a sandbox's policy as YAML in an editor with validate and apply (hot reload), the version
history ("v3 · 9b5d… · 14:02 · current") with diff and rollback, and an "allow" button for each recent
denial.

Works on the host state or, inside an OpenShell kernel, through the kernel broker (which refuses changes
unless the kernelspec enables policy_edits): there the edit buttons are disabled, with the reason and
what does work (the host-side `openshell sandbox ...` commands, a host kernel's PolicyPanel) shown. It
must never apply a policy that did not validate, nor offer a button that cannot work.
"""

from __future__ import annotations

import html
import time
from typing import Any

import ipywidgets as widgets

from jupyter_openshell.flowtext import allow_request, host_allow_command, url_of
from jupyter_openshell.magics.ops import ops_for
from jupyter_openshell.services.errors import issue_dicts
from jupyter_openshell.services.policies import diff

READ_ONLY = (
    "this kernel cannot change its own sandbox's policy (its kernelspec does not set policy_edits)"
)


def version_label(number: int, entry: dict, current: bool, now: float | None = None) -> str:
    """"v3 · 9b5d… · 14:02 · current": the version's number in the history, hash, when applied."""
    when = (entry.get("ts_ms") or 0) / 1000
    today = time.strftime("%Y-%m-%d", time.localtime(now or time.time()))
    clock = time.strftime("%H:%M" if time.strftime("%Y-%m-%d", time.localtime(when)) == today
                          else "%Y-%m-%d %H:%M", time.localtime(when))
    return f"v{number} · {str(entry.get('version'))[:4]}… · {clock}" + (" · current" if current else "")


def _read_only_html(name: str) -> str:
    e = html.escape
    return (
        '<div style="border-left:4px solid #f9a825;padding:4px 8px;background:#fff8e1">'
        f"<b>Read-only here</b>: {e(READ_ONLY)}. To change it, in a terminal on the host: "
        f"<code>openshell sandbox policy {e(name)} --set FILE</code> or "
        f"<code>openshell sandbox allow {e(name)} METHOD URL</code>; "
        f"or in a host Python kernel: <code>PolicyPanel({e(repr(name))})</code>.</div>"
    )


def _issues_html(exc: Exception) -> str:
    issues = issue_dicts(exc)
    if not issues:
        return f'<pre style="color:#b71c1c">{html.escape(str(exc))}</pre>'
    items = "".join(
        f"<li>line {i.get('line') or '?'}: <code>{html.escape(str(i.get('field') or ''))}</code>: "
        f"{html.escape(str(i.get('message')))}"
        + (f"<br>expected: {html.escape(str(i['expected']))}" if i.get("expected") else "")
        + "</li>"
        for i in issues
    )
    return f'<div style="color:#b71c1c"><b>invalid policy</b><ul>{items}</ul></div>'


def _diff_html(text: str) -> str:
    out = []
    for line in text.splitlines():
        color = "#1b5e20" if line.startswith("+") else "#b71c1c" if line.startswith("-") else "inherit"
        out.append(f'<span style="color:{color}">{html.escape(line)}</span>')
    return f"<pre>{chr(10).join(out) or '(no change)'}</pre>"


class PolicyPanel(widgets.VBox):
    """PolicyPanel(sandbox=None): edit, validate, apply, history/rollback, allow recent denials."""

    def __init__(self, sandbox: str | None = None, **kwargs: Any):
        self.ops = ops_for(sandbox)
        try:
            self.editable = bool(self.ops.capabilities().get("policy_edits"))
        except Exception:  # a broker that cannot say: the safe answer
            self.editable = False
        self.editor = widgets.Textarea(layout=widgets.Layout(width="100%", height="260px"))
        self.message = widgets.HTML()
        self.read_only = widgets.HTML("" if self.editable else _read_only_html(str(self.ops.name)))
        self.validate_button = widgets.Button(description="Validate", icon="check")
        self.apply_button = widgets.Button(description="Apply", button_style="primary", icon="upload")
        self.reload_button = widgets.Button(description="Reload", icon="refresh")
        self.versions = widgets.Dropdown(
            description="Version", options=[], layout=widgets.Layout(width="max-content", min_width="22em"),
            style={"description_width": "initial"},
        )
        self.diff_button = widgets.Button(description="Diff")
        self.rollback_button = widgets.Button(description="Rollback", button_style="warning")
        for button in (self.apply_button, self.rollback_button):
            button.disabled = not self.editable
            button.tooltip = "" if self.editable else READ_ONLY
        self.denials = widgets.VBox()
        self.version: str | None = None
        self.validate_button.on_click(lambda _: self.validate())
        self.apply_button.on_click(lambda _: self.apply())
        self.reload_button.on_click(lambda _: self.reload())
        self.diff_button.on_click(lambda _: self.show_diff())
        self.rollback_button.on_click(lambda _: self.rollback())
        title = widgets.HTML(f"<b>Policy of sandbox {html.escape(str(self.ops.name))}</b>")
        super().__init__(
            [
                title,
                self.read_only,
                self.editor,
                widgets.HBox([self.validate_button, self.apply_button, self.reload_button]),
                self.message,
                widgets.HBox([self.versions, self.diff_button, self.rollback_button]),
                widgets.HTML("<b>Recent denials</b>"),
                self.denials,
            ],
            **kwargs,
        )
        self.reload()

    def reload(self) -> None:
        try:
            shown = self.ops.show()
        except Exception as exc:
            self.message.value = _issues_html(exc)
            return
        self.editor.value = shown["yaml"]
        self.version = shown["version"]
        self._load_history()
        self._load_denials()

    def _load_history(self) -> None:
        try:
            entries = self.ops.history()
        except Exception:
            entries = []
        in_force = [i for i, e in enumerate(entries) if e.get("version") == self.version]
        newest_current = in_force[-1] if in_force else -1
        options = [
            (version_label(i + 1, e, i == newest_current), e.get("version")) for i, e in enumerate(entries)
        ]
        self.versions.options = list(reversed(options))  # newest first, the one in force selected
        if newest_current >= 0:
            self.versions.value = self.version

    def _load_denials(self) -> None:
        try:
            flows = self.ops.flows(limit=200)
        except Exception:
            flows = []
        seen: dict[tuple, dict] = {}
        for r in flows:
            if r.get("decision") == "deny":
                seen[(r.get("method") or "GET", url_of(r))] = r
        rows: list[widgets.Widget] = []
        for method, url in list(dict.fromkeys(allow_request(m, u) for m, u in seen))[-10:]:
            button = widgets.Button(
                description=f"Allow {method} {url}"[:80], layout=widgets.Layout(width="auto"),
                disabled=not self.editable, tooltip="" if self.editable else READ_ONLY,
            )
            button.on_click(lambda _, m=method, u=url: self.allow(m, u))
            if self.editable:
                rows.append(button)
            else:  # what works instead, for this very request
                command = html.escape(host_allow_command(str(self.ops.name), str(method), url))
                rows.append(widgets.HBox([button, widgets.HTML(f"on the host: <code>{command}</code>")],
                                         layout=widgets.Layout(flex_flow="row wrap")))
        self.denials.children = rows or [widgets.HTML("<i>none</i>")]

    def validate(self) -> bool:
        from jupyter_openshell.policy import PolicyError, parse_policy

        try:
            policy = parse_policy(self.editor.value, source="editor")
        except PolicyError as exc:
            self.message.value = _issues_html(exc)
            return False
        self.message.value = (
            f'<span style="color:#1b5e20">valid, version <code>{policy.version}</code></span>'
        )
        return True

    def apply(self) -> None:
        if not self.validate():
            return
        try:
            result = self.ops.put(self.editor.value, "editor")
        except Exception as exc:
            self.message.value = _issues_html(exc)
            return
        self.message.value = f"applied version <code>{result['version']}</code>" + _diff_html(result["diff"])
        self.version = result["version"]
        self._load_history()

    def allow(self, method: str, url: str) -> None:
        try:
            result = self.ops.allow(method, url)
        except Exception as exc:
            self.message.value = _issues_html(exc)
            return
        self.message.value = f"allowed {html.escape(method)} {html.escape(url)}" + _diff_html(result["diff"])
        self.reload()

    def show_diff(self) -> None:
        version = self.versions.value
        for entry in self.ops.history():
            if entry.get("version") == version and "yaml" in entry:
                self.message.value = _diff_html(diff(entry["yaml"], self.editor.value, "policy"))
                return
        self.message.value = f"version {html.escape(str(version))}: no stored text to compare"

    def rollback(self) -> None:
        if not self.versions.value:
            return
        try:
            result = self.ops.rollback(self.versions.value)
        except Exception as exc:
            self.message.value = _issues_html(exc)
            return
        self.message.value = f"rolled back to <code>{result['version']}</code>" + _diff_html(result["diff"])
        self.reload()
