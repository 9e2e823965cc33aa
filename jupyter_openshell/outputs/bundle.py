"""The mime-bundle filter: what a sandboxed kernel's display data may hold when it reaches the browser.

Rules (documented in docs/output-filter.md): script types are dropped; text/html and image/svg+xml are
sanitized; text/markdown is rendered to sanitized text/html on the host; text/plain, text/latex, the raster
images (base64 only) and application/json pass; a widget view passes only for a widget model this kernel
created and the filter allowed; any other type is dropped unless the operator allowlisted it
(`OutputOptions.mime_types`). Display metadata keeps only layout hints; `trusted` and unknown keys go.
It must never return a value it did not build or check itself.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from .sanitize import markdown_to_html, sanitize_html, sanitize_svg

TEXT_TYPES = frozenset({"text/plain", "text/latex"})
RASTER_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# Never allowlistable: anything a browser or a renderer extension runs as script or as a document.
_ACTIVE_TYPE = re.compile(
    r"javascript|ecmascript|jscript|wasm|html|xml|\+js\b|/js\b|x-sh|vnd\.jupyter\.", re.I
)
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*")
_SIZE_KEYS = ("width", "height")
_FLAG_KEYS = ("isolated", "unconfined", "expanded")


@dataclasses.dataclass(frozen=True)
class OutputOptions:
    """Per-kernel filter settings (provisioner traitlets): extra mime types and widget modules the operator
    trusts the installed renderers of, and `trusted`, which turns the filter off (dangerous)."""

    mime_types: frozenset[str] = frozenset()
    widget_modules: frozenset[str] = frozenset()
    trusted: bool = False


def removed_note(kinds: list[str]) -> str:
    return f"[OpenShell removed output the browser would run or load: {', '.join(sorted(kinds))}]"


def _text(value: Any) -> str | None:
    """nbformat allows a multiline string as a list of strings."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(value)
    return None


def _json_ok(value: Any, depth: int = 0) -> bool:
    if depth > 64:
        return False
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list):
        return all(_json_ok(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_ok(v, depth + 1) for k, v in value.items())
    return False


def _entry_metadata(meta: Any) -> dict:
    """Layout hints only: sizes (numbers), flags (booleans), needs_background ('light'/'dark')."""
    if not isinstance(meta, dict):
        return {}
    out: dict[str, Any] = {}
    for key in _SIZE_KEYS:
        if isinstance(meta.get(key), int | float) and not isinstance(meta.get(key), bool):
            out[key] = meta[key]
    for key in _FLAG_KEYS:
        if isinstance(meta.get(key), bool):
            out[key] = meta[key]
    if meta.get("needs_background") in ("light", "dark"):
        out["needs_background"] = meta["needs_background"]
    return out


def filter_bundle(
    data: Any,
    metadata: Any,
    options: OutputOptions,
    widget_ok: Callable[[str], bool] = lambda model_id: False,
) -> tuple[dict, dict]:
    """(data, metadata) safe to render; a bundle left empty gets a text/plain note of what was removed."""
    if not isinstance(data, dict):
        data = {}
    out: dict[str, Any] = {}
    removed: list[str] = []
    for mime, value in data.items():
        if mime == "text/markdown" and "text/html" in data:
            continue  # the page would show the bundle's own HTML; the markdown becomes HTML otherwise
        kept = _filter_entry(str(mime), value, options, widget_ok)
        if kept is None:
            removed.append(str(mime)[:100])
        else:
            out[kept[0]] = kept[1]
    if not out and removed:
        out["text/plain"] = removed_note(removed)
    meta = _entry_metadata(metadata)
    if isinstance(metadata, dict):
        for mime in out:
            if isinstance(metadata.get(mime), dict):
                meta[mime] = _entry_metadata(metadata[mime])
    return out, meta


def _filter_entry(
    mime: str, value: Any, options: OutputOptions, widget_ok: Callable[[str], bool]
) -> tuple[str, Any] | None:
    if mime in TEXT_TYPES:
        text = _text(value)
        return None if text is None else (mime, text)
    if mime in RASTER_TYPES:
        text = _text(value)
        return (mime, text) if text is not None and _BASE64.fullmatch(text) else None
    if mime == "text/html":
        text = _text(value)
        return None if text is None else (mime, sanitize_html(text))
    if mime == "image/svg+xml":
        text = _text(value)
        return None if text is None else (mime, sanitize_svg(text))
    if mime == "text/markdown":
        text = _text(value)
        return None if text is None else ("text/html", markdown_to_html(text))
    if mime == "application/json":
        return (mime, value) if _json_ok(value) else None
    if mime == WIDGET_VIEW:
        return _widget_view(value, widget_ok)
    if mime in options.mime_types and not _ACTIVE_TYPE.search(mime) and _json_ok(value):
        return mime, value
    return None


def _widget_view(value: Any, widget_ok: Callable[[str], bool]) -> tuple[str, Any] | None:
    if not isinstance(value, dict) or not isinstance(value.get("model_id"), str):
        return None
    if not widget_ok(value["model_id"]):
        return None
    view: dict[str, Any] = {"model_id": value["model_id"]}
    for key in ("version_major", "version_minor"):
        if isinstance(value.get(key), int) and not isinstance(value.get(key), bool):
            view[key] = value[key]
    return WIDGET_VIEW, view


def filter_output(output: Any, options: OutputOptions, widget_ok: Callable[[str], bool]) -> dict | None:
    """One nbformat output (the Output widget's `outputs` state), rebuilt from the fields it may have."""
    if not isinstance(output, dict):
        return None
    kind = output.get("output_type")
    if kind in ("display_data", "execute_result"):
        data, meta = filter_bundle(output.get("data"), output.get("metadata"), options, widget_ok)
        out: dict[str, Any] = {"output_type": kind, "data": data, "metadata": meta}
        if kind == "execute_result":
            count = output.get("execution_count")
            out["execution_count"] = count if isinstance(count, int) else None
        return out
    if kind == "stream":
        text = _text(output.get("text"))
        name = output.get("name")
        if text is None or name not in ("stdout", "stderr"):
            return None
        return {"output_type": "stream", "name": name, "text": text}
    if kind == "error":
        return {"output_type": "error", **error_fields(output)}
    return None


def error_fields(content: dict) -> dict:
    """ename, evalue, traceback as text (the frontend renders them as ANSI text)."""
    traceback = content.get("traceback")
    return {
        "ename": str(content.get("ename", ""))[:1000],
        "evalue": str(content.get("evalue", "")),
        "traceback": [str(t) for t in traceback] if isinstance(traceback, list) else [],
    }
