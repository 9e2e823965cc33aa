"""The message filter of one sandboxed kernel: every message it sends towards the browser, rebuilt.

Total by construction: each message type the Jupyter protocol defines for kernel -> frontend traffic has a
builder below that copies only the fields it knows, checked for type, with display data through
`bundle.filter_bundle` and comm traffic through `widgets.WidgetFilter`; a type without a builder (debug
messages, extensions' messages, anything new) is dropped, and so is a message whose builder fails. Headers
keep their string fields only; `kernel_info_reply` says `debugger: false` (the debugger's variable views
render kernel-provided mime bundles) and keeps only http(s) help links. It never changes what the server
sends to the kernel, and never lets a field through that it did not check.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .bundle import OutputOptions, error_fields, filter_bundle
from .widgets import WidgetFilter

HEADER_KEYS = ("msg_id", "msg_type", "username", "session", "date", "version", "subshell_id")
# Message metadata: execution bookkeeping, and `version`, the widget protocol version of comm messages.
METADATA_KEYS = ("started", "dependencies_met", "engine", "status", "version")
STATES = frozenset({"busy", "idle", "starting", "restarting", "dead"})
REPLY_STATUS = frozenset({"ok", "error", "aborted"})
_HTTP = re.compile(r"https?://[^\s\x00-\x1f\x7f\\\"'<>]+")


def clean_header(header: Any) -> dict:
    if not isinstance(header, dict):
        return {}
    return {k: header[k] for k in HEADER_KEYS if isinstance(header.get(k), str)}


def clean_metadata(metadata: Any) -> dict:
    if not isinstance(metadata, dict):
        return {}
    return {k: metadata[k] for k in METADATA_KEYS if isinstance(metadata.get(k), str | bool | int | float)}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


class MessageFilter:
    """Per kernel (it keeps the widget comms); not thread-safe: one relay thread uses it."""

    def __init__(self, options: OutputOptions):
        self.options = options
        self.widgets = WidgetFilter(options)
        self._builders: dict[str, Callable[[dict, list[bytes]], tuple[dict, list[bytes]] | dict | None]] = {
            "status": self._status,
            "execute_input": self._execute_input,
            "stream": self._stream,
            "display_data": self._display,
            "update_display_data": self._display,
            "execute_result": self._execute_result,
            "clear_output": lambda c, b: {"wait": c.get("wait") is True},
            "error": lambda c, b: error_fields(c),
            "comm_open": lambda c, b: self.widgets.comm_open(c, b),
            "comm_msg": lambda c, b: self.widgets.comm_msg(c, b),
            "comm_close": lambda c, b: self.widgets.comm_close(c),
            "execute_reply": self._execute_reply,
            "inspect_reply": self._inspect_reply,
            "complete_reply": self._complete_reply,
            "history_reply": self._history_reply,
            "is_complete_reply": self._is_complete_reply,
            "kernel_info_reply": self._kernel_info_reply,
            "comm_info_reply": self._comm_info_reply,
            "shutdown_reply": lambda c, b: {**self._status_of(c), "restart": c.get("restart") is True},
            "interrupt_reply": lambda c, b: self._status_of(c),
            "input_request": lambda c, b: {
                "prompt": _str(c.get("prompt")),
                "password": c.get("password") is True,
            },
            "create_subshell_reply": self._subshell_reply,
            "delete_subshell_reply": lambda c, b: self._status_of(c),
            "list_subshell_reply": self._subshell_reply,
        }

    # -- entry points --------------------------------------------------------------------------------

    def from_kernel(
        self, msg_type: str, content: Any, buffers: list[bytes]
    ) -> tuple[dict, list[bytes]] | None:
        """The filtered (content, buffers) of a kernel message, or None to drop it."""
        builder = self._builders.get(msg_type)
        if builder is None or not isinstance(content, dict):
            return None
        result = builder(content, buffers)
        if result is None:
            return None
        return result if isinstance(result, tuple) else (result, [])

    def from_frontend(self, msg_type: str, content: Any) -> None:
        """Note what the (trusted) frontend opens: the widget control comm."""
        if msg_type == "comm_open" and isinstance(content, dict):
            self.widgets.frontend_comm_open(content)

    def bundle(self, data: Any, metadata: Any) -> tuple[dict, dict]:
        return filter_bundle(data, metadata, self.options, self.widgets.allowed)

    # -- builders ------------------------------------------------------------------------------------

    def _status(self, content: dict, buffers: list[bytes]) -> dict | None:
        state = content.get("execution_state")
        return {"execution_state": state} if state in STATES else None

    def _execute_input(self, content: dict, buffers: list[bytes]) -> dict:
        return {"code": _str(content.get("code")), "execution_count": _int(content.get("execution_count"))}

    def _stream(self, content: dict, buffers: list[bytes]) -> dict | None:
        name, text = content.get("name"), content.get("text")
        if name not in ("stdout", "stderr") or not isinstance(text, str):
            return None
        return {"name": name, "text": text}

    def _display(self, content: dict, buffers: list[bytes]) -> dict:
        data, metadata = self.bundle(content.get("data"), content.get("metadata"))
        out: dict[str, Any] = {"data": data, "metadata": metadata, "transient": {}}
        transient = content.get("transient")
        if isinstance(transient, dict) and isinstance(transient.get("display_id"), str):
            out["transient"] = {"display_id": transient["display_id"]}
        return out

    def _execute_result(self, content: dict, buffers: list[bytes]) -> dict:
        return {**self._display(content, buffers), "execution_count": _int(content.get("execution_count"))}

    def _status_of(self, content: dict) -> dict:
        status = content.get("status")
        out: dict[str, Any] = {"status": status if status in REPLY_STATUS else "error"}
        if out["status"] == "error":
            out.update(error_fields(content))
        return out

    def _execute_reply(self, content: dict, buffers: list[bytes]) -> dict:
        out = {**self._status_of(content), "execution_count": _int(content.get("execution_count"))}
        if out["status"] != "ok":
            return out
        payloads = content.get("payload")
        out["payload"] = [p for p in map(self._payload, payloads if isinstance(payloads, list) else []) if p]
        expressions = content.get("user_expressions")
        out["user_expressions"] = {}
        if isinstance(expressions, dict):
            for name, value in expressions.items():
                if isinstance(value, dict):
                    entry = self._status_of(value)
                    if entry["status"] == "ok":
                        entry["data"], entry["metadata"] = self.bundle(
                            value.get("data"), value.get("metadata")
                        )
                    out["user_expressions"][str(name)] = entry
        return out

    def _payload(self, payload: Any) -> dict | None:
        if not isinstance(payload, dict):
            return None
        source = payload.get("source")
        if source == "page":
            data, _ = self.bundle(payload.get("data"), {})
            return {"source": source, "data": data, "start": _int(payload.get("start")) or 0}
        if source == "set_next_input":
            return {
                "source": source,
                "text": _str(payload.get("text")),
                "replace": payload.get("replace") is True,
            }
        if source == "ask_exit":
            return {"source": source, "keepkernel": payload.get("keepkernel") is True}
        return None

    def _inspect_reply(self, content: dict, buffers: list[bytes]) -> dict:
        out = self._status_of(content)
        if out["status"] == "ok":
            data, metadata = self.bundle(content.get("data"), content.get("metadata"))
            out.update(found=content.get("found") is True, data=data, metadata=metadata)
        return out

    def _complete_reply(self, content: dict, buffers: list[bytes]) -> dict:
        out = self._status_of(content)
        if out["status"] != "ok":
            return out
        matches = content.get("matches")
        out.update(
            matches=[m for m in matches if isinstance(m, str)] if isinstance(matches, list) else [],
            cursor_start=_int(content.get("cursor_start")) or 0,
            cursor_end=_int(content.get("cursor_end")) or 0,
            metadata={},
        )
        meta = content.get("metadata")
        types = meta.get("_jupyter_types_experimental") if isinstance(meta, dict) else None
        if isinstance(types, list):
            out["metadata"]["_jupyter_types_experimental"] = [
                {
                    "start": _int(t.get("start")) or 0,
                    "end": _int(t.get("end")) or 0,
                    "text": _str(t.get("text")),
                    "type": _str(t.get("type")),
                    "signature": _str(t.get("signature")),
                }
                for t in types
                if isinstance(t, dict)
            ]
        return out

    def _history_reply(self, content: dict, buffers: list[bytes]) -> dict:
        out = self._status_of(content)
        history = content.get("history")
        entries = []
        for item in history if isinstance(history, list) else []:
            if (
                isinstance(item, list)
                and len(item) == 3
                and _int(item[0]) is not None
                and _int(item[1]) is not None
            ):
                value = item[2]
                if isinstance(value, str) or (
                    isinstance(value, list)
                    and len(value) == 2
                    and all(isinstance(v, str | None) for v in value)
                ):
                    entries.append([item[0], item[1], value])
        out["history"] = entries
        return out

    def _is_complete_reply(self, content: dict, buffers: list[bytes]) -> dict | None:
        status = content.get("status")
        if status not in ("complete", "incomplete", "invalid", "unknown"):
            return None
        return (
            {"status": status, "indent": _str(content.get("indent"))}
            if status == "incomplete"
            else {"status": status}
        )

    def _kernel_info_reply(self, content: dict, buffers: list[bytes]) -> dict:
        out = self._status_of(content)
        out.update(
            protocol_version=_str(content.get("protocol_version"), "5.3"),
            implementation=_str(content.get("implementation")),
            implementation_version=_str(content.get("implementation_version")),
            banner=_str(content.get("banner")),
            debugger=False,
            help_links=[],
        )
        info = content.get("language_info")
        language: dict[str, Any] = {}
        if isinstance(info, dict):
            for key in (
                "name",
                "version",
                "mimetype",
                "file_extension",
                "pygments_lexer",
                "nbconvert_exporter",
            ):
                if isinstance(info.get(key), str):
                    language[key] = info[key]
            mode = info.get("codemirror_mode")
            if isinstance(mode, str):
                language["codemirror_mode"] = mode
            elif isinstance(mode, dict) and isinstance(mode.get("name"), str):
                language["codemirror_mode"] = {
                    "name": mode["name"],
                    "version": _int(mode.get("version")) or 3,
                }
        out["language_info"] = language
        links = content.get("help_links")
        for link in links if isinstance(links, list) else []:
            if isinstance(link, dict) and isinstance(link.get("url"), str) and _HTTP.fullmatch(link["url"]):
                out["help_links"].append({"text": _str(link.get("text")), "url": link["url"]})
        features = content.get("supported_features")
        if isinstance(features, list):
            out["supported_features"] = [f for f in features if isinstance(f, str) and f != "debugger"]
        return out

    def _comm_info_reply(self, content: dict, buffers: list[bytes]) -> dict:
        out = self._status_of(content)
        comms = content.get("comms")
        out["comms"] = {
            comm_id: {"target_name": "jupyter.widget"}
            for comm_id in (comms if isinstance(comms, dict) else {})
            if self.widgets.allowed(comm_id)
        }
        return out

    def _subshell_reply(self, content: dict, buffers: list[bytes]) -> dict:
        out = self._status_of(content)
        subshell = content.get("subshell_id")
        if isinstance(subshell, str):
            out["subshell_id"] = subshell
        elif isinstance(subshell, list):
            out["subshell_id"] = [s for s in subshell if isinstance(s, str)]
        return out
