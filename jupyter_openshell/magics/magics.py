"""The IPython magics: `%%sandbox`, `%sandbox ls|rm`, `%policy ...` and `%%policy`.

Loaded with `%load_ext jupyter_openshell` (and automatically in the OpenShell kernel, where `%policy` acts
on the kernel's own sandbox through its broker). Errors are shown as short readable messages pointing at
the cell's line, not as tracebacks of this module.
They must never run a sandboxed cell's code in the calling kernel's own process.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display

from jupyter_openshell.services.errors import ServiceError

from . import remote
from .denials import DenialWatcher
from .ops import inside_sandbox, ops_for

# Bad magic input or a refused change. IPython shows only the message of UsageError itself (it tests
# `etype is UsageError`): a subclass would get a full traceback.
MagicUsageError = UsageError


SANDBOX_USAGE = (
    "usage: %%sandbox [NAME] [--policy FILE] [--timeout S] [--gpu] | %sandbox ls | %sandbox rm NAME"
)


def _readable(usage: str) -> Callable:
    """Bad input or state (unbalanced quotes, an unreadable file, an unknown sandbox, a refusal) is shown
    as its message and the magic's usage line, never as a traceback of this module."""

    def wrap(magic: Callable) -> Callable:
        @functools.wraps(magic)
        def run(self: Any, line: str, cell: str | None = None) -> Any:
            from jupyter_openshell.services.sandboxes import SandboxError

            try:
                return magic(self, line, cell)
            except (ServiceError, SandboxError, OSError, ValueError) as exc:
                raise MagicUsageError(f"{exc}\n{usage}") from None

        return run

    return wrap


def _raw(text: str, html: str | None = None) -> None:
    data = {"text/plain": text}
    if html:
        data["text/html"] = html
    display(data, raw=True)


def _show_diff(result: dict) -> None:
    from html import escape

    diff = result.get("diff") or "(no change)"
    state = (
        "applied (hot reload)"
        if result.get("in_force", True)
        else "saved; the proxy is not running and applies it when it starts"
    )
    text = f"policy {result.get('name')}: version {result.get('version')} {state}\n{diff}"
    rows = []
    for line in diff.splitlines():
        color = "#1b5e20" if line.startswith("+") else "#b71c1c" if line.startswith("-") else "inherit"
        rows.append(f'<span style="color:{color}">{escape(line)}</span>')
    html = (
        f"<b>policy {escape(str(result.get('name')))}</b>: version <code>{escape(str(result.get('version')))}"
        f"</code> {state}<pre>{chr(10).join(rows) or '(no change)'}</pre>"
    )
    _raw(text, html)
    for warning in result.get("warnings") or []:
        print(f"warning: {warning}")


def _sandbox_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="%%sandbox", add_help=False, exit_on_error=False)
    p.add_argument("name", nargs="?", default="default-sandbox")
    p.add_argument("--policy", default="")
    p.add_argument("--timeout", type=float, default=None)
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--backend", default="")
    p.add_argument("--image", default="")
    return p


@magics_class
class OpenShellMagics(Magics):
    def __init__(self, shell: Any):
        super().__init__(shell)
        self.current: str | None = None  # last %%sandbox used: the default NAME of %policy on the host
        self.watchers: dict[str, DenialWatcher] = {}

    # -- %%sandbox -----------------------------------------------------------------------------------

    @line_cell_magic
    @_readable(SANDBOX_USAGE)
    def sandbox(self, line: str, cell: str | None = None) -> None:
        """%%sandbox [NAME] [--policy FILE] [--timeout S] [--gpu] [--backend B] [--image IMG]: run the cell
        in sandbox NAME (a container of IMG with --backend docker).
        %sandbox ls: list sandboxes.  %sandbox rm NAME: stop and remove one."""
        words = shlex.split(line)
        if cell is None:
            return self._sandbox_line(words)
        if inside_sandbox():
            raise MagicUsageError("%%sandbox runs from a host kernel; this kernel is already sandboxed")
        try:
            args = _sandbox_parser().parse_args(words)
        except (argparse.ArgumentError, SystemExit) as exc:
            raise MagicUsageError(
                f"%%sandbox {line}: {exc}\nusage: %%sandbox [NAME] [--policy FILE] [--timeout S] [--gpu] "
                "[--backend local|docker] [--image IMAGE]"
            ) from None
        from jupyter_openshell.kernel.session import KernelStartError

        try:
            box, created = remote.get_or_start(
                args.name, policy_file=args.policy, gpu=args.gpu, backend=args.backend, image=args.image
            )
        except KernelStartError as exc:
            raise MagicUsageError(str(exc)) from None
        if args.policy and not created:
            _show_diff(ops_for(args.name).put(Path(args.policy).read_text(), source=args.policy))
        self.current = args.name
        watcher = self.watchers.setdefault(args.name, DenialWatcher(ops_for(args.name), args.name))
        watcher.mark(time.time())
        failed = None
        try:
            box.run(cell, timeout=args.timeout)
        except remote.SandboxCellError as exc:
            failed = exc
            raise
        finally:
            if watcher.check() and failed is not None:  # the notices above say why: the error line stays
                failed.traceback = failed.traceback[-1:]

    def _sandbox_line(self, words: list[str]) -> None:
        if not words or words[0] == "ls":
            from jupyter_openshell.services import sandboxes

            attached = remote.live()
            rows = []
            def failed(backend: str, exc: Exception) -> None:
                print(f"{backend} sandboxes not listed: {exc}")

            for info in sandboxes.list_all(failed):
                attached_here = "kernel attached" if info.name in attached else ""
                rows.append(f"{info.name:24} {info.backend:10} {attached_here}".rstrip())
            print("\n".join(rows) or "no sandboxes")
            return
        if words[0] == "rm" and len(words) == 2:
            name = words[1]
            if remote.remove(name):
                print(f"sandbox {name} removed")
                return
            from jupyter_openshell.services import sandboxes

            sandboxes.destroy(name)
            print(f"sandbox {name} removed")
            return
        raise MagicUsageError("usage: %sandbox ls | %sandbox rm NAME | %%sandbox [NAME] [--policy FILE] ...")

    # -- %policy / %%policy --------------------------------------------------------------------------

    def _name(self, name: str | None) -> str | None:
        return name or (None if inside_sandbox() else self.current)

    @line_cell_magic
    def policy(self, line: str, cell: str | None = None) -> None:
        """%policy show | explain [METHOD] URL | allow [METHOD] URL | allow PRESET | deny [METHOD] URL |
        mode audit|enforce | history | presets, each with an optional sandbox NAME at the end;
        %%policy [NAME] with the policy YAML as body: validated, diff shown, applied.

          %policy allow GET https://example.com/api/items   exactly this method and path
          %policy allow GET https://example.com/api/**      ... and every path below /api/ (* = one segment)
          %policy allow https://example.com/**              GET and HEAD anywhere on the host (no METHOD:
                                                            GET and HEAD; * = any method)
          %policy allow pypi                                a preset: pypi, conda, huggingface, github, npm
        """
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise MagicUsageError(f"%policy {line}: {exc}\n{POLICY_USAGE}") from None
        if cell is not None:
            if len(words) > 1:
                raise MagicUsageError("usage: %%policy [NAME] followed by the policy YAML")
            name = self._name(words[0] if words else None)
            ops = ops_for(name)
            source = f"%%policy cell (line 1 is the first line after %%policy) of sandbox {ops.name}"
            return _show_diff(self._apply(lambda: ops.put(cell, source), line_offset=1))
        cmd, args, name = _policy_command(words or ["show"])
        if cmd == "presets":
            from jupyter_openshell.policy import presets

            print("\n".join(f"{p.name:12} {p.description}" for p in presets().values()))
            return
        ops = self._apply(lambda: ops_for(self._name(name)))
        if cmd == "show":
            shown = self._apply(ops.show)
            text = f"# policy {shown['name']}, version {shown['version']}\n{shown['yaml']}"
            if shown.get("effective"):
                text += "\n# effective network.egress rules (presets expanded):\n" + shown["effective"]
            _raw(text)
        elif cmd == "history":
            entries = self._apply(ops.history)
            lines = [f"{e['version']}  applied {e['applied']}" for e in entries]
            print("\n".join(lines) + "\n(oldest first; the last one is in force)" if lines else "no history")
        elif cmd == "explain":
            result = self._apply(lambda: ops.explain(args[0] or "GET", args[1]))
            print("\n".join(f"{k}: {v}" for k, v in result.items() if v))
        elif cmd == "preset":
            _show_diff(self._apply(lambda: ops.allow_preset(args[0])))
        elif cmd in ("allow", "deny"):
            _show_diff(self._apply(lambda: getattr(ops, cmd)(*args)))
        else:
            _show_diff(self._apply(lambda: ops.mode(args[0])))

    @staticmethod
    def _apply(fn: Any, line_offset: int = 0) -> Any:
        from jupyter_openshell.policy import BadRequest, PolicyError

        try:
            return fn()
        except (ServiceError, PolicyError) as exc:
            raise MagicUsageError(_issues_text(exc, line_offset)) from None
        except (BadRequest, ValueError, OSError) as exc:
            raise MagicUsageError(f"{exc}\n{POLICY_USAGE}") from None


POLICY_USAGE = (
    "usage: %policy show | explain [METHOD] URL | allow [METHOD] URL | allow PRESET | deny [METHOD] URL"
    " | mode audit|enforce | history | presets   (each may end with a sandbox NAME)\n"
    "  URL paths may be globs: https://example.com/api/** (that path and below), https://example.com/**"
    " (the whole host); no METHOD = GET and HEAD; presets: pypi, conda, huggingface, github, npm"
)
_ARITY = {"show": 0, "history": 0, "presets": 0, "mode": 1}


def _policy_command(words: list[str]) -> tuple[str, list[str], str | None]:
    """(command, its arguments, sandbox NAME or None) of a `%policy` line; MagicUsageError if malformed.
    `allow`/`deny`/`explain` take [METHOD] URL (METHOD "" when left out); `allow PRESET` is "preset"."""
    cmd, rest = words[0], words[1:]
    if cmd in _ARITY and len(rest) in (_ARITY[cmd], _ARITY[cmd] + 1) and not (cmd == "presets" and rest):
        n = _ARITY[cmd]
        return cmd, rest[:n], rest[n] if len(rest) > n else None
    if cmd in ("allow", "deny", "explain") and rest:
        from jupyter_openshell.policy import presets

        if cmd == "allow" and rest[0] in presets() and len(rest) <= 2:
            return "preset", rest[:1], rest[1] if len(rest) == 2 else None
        if "://" in rest[0] and len(rest) <= 2:
            return cmd, ["", rest[0]], rest[1] if len(rest) == 2 else None
        if len(rest) in (2, 3) and "://" in rest[1]:
            return cmd, [rest[0].upper(), rest[1]], rest[2] if len(rest) == 3 else None
        if cmd == "allow" and "://" not in " ".join(rest):
            close = difflib.get_close_matches(rest[0].lower(), list(presets()), n=1, cutoff=0.5)
            hint = f" (did you mean the preset {close[0]!r}?)" if close else ""
            raise MagicUsageError(
                f"%policy allow {' '.join(rest)}: neither a URL nor a preset{hint}\n{POLICY_USAGE}")
    raise MagicUsageError(f"%policy {' '.join(words)}: not understood\n{POLICY_USAGE}")


def _issues_text(exc: Any, line_offset: int = 0) -> str:
    """The issues of a refused policy, one per line; with `line_offset`, lines of the cell (%%policy)."""
    issues = getattr(exc, "issue_dicts", None)
    if not issues:
        return str(exc)
    lines = []
    for i in issues:
        where = "policy"
        if i.get("line"):
            where = f"{'cell ' if line_offset else ''}line {i['line'] + line_offset}"
            where += f", column {i['column']}" if i.get("column") else ""
        lines.append(f"{where}: {i.get('field') or '<document>'}: {i.get('message')}")
        if i.get("expected"):
            lines.append(f"    expected: {i['expected']}")
        if i.get("example"):
            lines.append(f"    example:  {i['example']}")
    return "policy not applied (nothing changed):\n" + "\n".join(lines)
