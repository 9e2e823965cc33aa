"""The widget filter of one kernel: which widget models a sandboxed kernel may create, and their state.

A model passes only when its `_model_module` and `_view_module` are installed widget packages on the
allowlist (@jupyter-widgets/base, controls, output, plus `OutputOptions.widget_modules`); its fields are
those of the installed ipywidgets class of that name (anything else is dropped), so no inline module
(anywidget `_esm`/`_css`, any `*.js` source) can get in. Fields the browser renders as HTML are sanitized:
HTML/HTMLMath `value`, `description` when `description_allow_html`; the Output widget's `outputs` go
through the bundle filter; Layout/Style values must be plain CSS values; media widgets keep only image,
video or audio formats (never `url`, a fetch around the sandbox's egress policy). The other fields are
rendered as text by @jupyter-widgets/controls 5 (textContent, title, value), which was checked. jslink
models (LinkModel, DirectionalLinkModel) are refused: they copy values between widgets in the browser,
after this filter. Updates are filtered against the model's identity and the fields tracked per comm, so a
later update cannot turn a harmless field into an active one. It must never pass a field it does not know.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any

from .bundle import OutputOptions, _json_ok, filter_output
from .sanitize import css_value_ok, sanitize_html

WIDGET_TARGET = "jupyter.widget"
CONTROL_TARGET = "jupyter.widget.control"
BASE_MODULES = frozenset({"@jupyter-widgets/base", "@jupyter-widgets/controls", "@jupyter-widgets/output"})
REFUSED_MODELS = frozenset({"LinkModel", "DirectionalLinkModel"})
IDENTITY = ("_model_module", "_model_name", "_view_module", "_view_name")
VERSIONS = ("_model_module_version", "_view_module_version")
HTML_VALUE_MODELS = frozenset({"HTMLModel", "HTMLMathModel"})
MEDIA_FORMATS = {
    "ImageModel": frozenset({"png", "jpeg", "jpg", "gif", "webp", "bmp", "svg+xml"}),
    "VideoModel": frozenset({"mp4", "webm", "ogg"}),
    "AudioModel": frozenset({"mp3", "wav", "ogg", "mpeg", "webm", "flac"}),
}
MAX_COMMS = 100_000
_VERSION = re.compile(r"[\w.^~*<>=| -]{0,64}")
_CLASS = re.compile(r"[A-Za-z0-9_-]{1,100}")
_GRID_AREAS = re.compile(r"[\w\s\"'.-]*")


@functools.cache
def installed_models() -> dict[tuple[str, str], frozenset[str]]:
    """{(model module, model name): synced field names} of the installed ipywidgets classes."""
    import ipywidgets

    models: dict[tuple[str, str], frozenset[str]] = {}
    stack = [ipywidgets.Widget]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        traits = cls.class_traits()
        module, name = traits.get("_model_module"), traits.get("_model_name")
        if module is None or name is None:
            continue
        key = (module.default_value, name.default_value)
        if key[0] in BASE_MODULES and key[1] not in REFUSED_MODELS:
            models[key] = models.get(key, frozenset()) | frozenset(cls.class_trait_names(sync=True))
    return models


@dataclasses.dataclass
class Model:
    module: str
    name: str
    fields: frozenset[str] | None  # None: an operator-allowlisted module, fields unknown
    tracked: dict[str, Any] = dataclasses.field(default_factory=dict)


def put_buffers(state: Any, paths: Any, buffers: list[bytes]) -> bool:
    """Put each buffer at its path (list of keys/indexes) into `state`; False when a path is invalid."""
    if not isinstance(paths, list) or len(paths) != len(buffers):
        return False
    for path, buf in zip(paths, buffers, strict=True):
        if not isinstance(path, list) or not path:
            return False
        obj = state
        for key in path[:-1]:
            obj = _child(obj, key)
            if obj is None:
                return False
        last = path[-1]
        if (isinstance(obj, dict) and isinstance(last, str)) or (
            isinstance(obj, list) and isinstance(last, int) and 0 <= last < len(obj)
        ):
            obj[last] = bytes(buf)
        else:
            return False
    return True


def _child(obj: Any, key: Any) -> Any:
    if isinstance(obj, dict) and isinstance(key, str):
        return obj.get(key)
    if isinstance(obj, list) and isinstance(key, int) and 0 <= key < len(obj):
        return obj[key]
    return None


def remove_buffers(state: Any) -> tuple[Any, list[list], list[bytes]]:
    """The inverse of `put_buffers`, as ipywidgets does it: bytes leave dicts, and are None in lists."""
    paths: list[list] = []
    buffers: list[bytes] = []

    def walk(obj: Any, path: list) -> Any:
        if isinstance(obj, dict):
            out = {}
            for key, value in obj.items():
                if isinstance(value, bytes):
                    paths.append([*path, key])
                    buffers.append(value)
                else:
                    out[key] = walk(value, [*path, key])
            return out
        if isinstance(obj, list):
            items = []
            for i, value in enumerate(obj):
                if isinstance(value, bytes):
                    paths.append([*path, i])
                    buffers.append(value)
                    items.append(None)
                else:
                    items.append(walk(value, [*path, i]))
            return items
        return obj

    return walk(state, []), paths, buffers


class WidgetFilter:
    """Widget comms of one kernel: models by comm id, and the control comms the frontend opened."""

    def __init__(self, options: OutputOptions):
        self.options = options
        self.models: dict[str, Model] = {}
        self.control_comms: set[str] = set()

    def allowed(self, model_id: str) -> bool:
        return model_id in self.models

    # -- the frontend's side (trusted): which comms are control comms -------------------------------

    def frontend_comm_open(self, content: dict) -> None:
        comm_id = content.get("comm_id")
        if isinstance(comm_id, str) and content.get("target_name") == CONTROL_TARGET:
            self.control_comms.add(comm_id)

    # -- the kernel's side ---------------------------------------------------------------------------

    def comm_open(self, content: dict, buffers: list[bytes]) -> tuple[dict, list[bytes]] | None:
        comm_id, data = content.get("comm_id"), content.get("data")
        if content.get("target_name") != WIDGET_TARGET or not isinstance(comm_id, str):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("state"), dict):
            return None
        state = dict(data["state"])
        if not put_buffers(state, data.get("buffer_paths", []), buffers):
            return None
        model = self._model(state)
        if model is None or len(self.models) >= MAX_COMMS:
            return None
        state = self._state(model, state, full=True)
        self.models[comm_id] = model
        state, paths, bufs = remove_buffers(state)
        data = {"state": state, "buffer_paths": paths}
        return {"comm_id": comm_id, "target_name": WIDGET_TARGET, "data": data}, bufs

    def comm_msg(self, content: dict, buffers: list[bytes]) -> tuple[dict, list[bytes]] | None:
        comm_id, data = content.get("comm_id"), content.get("data")
        if not isinstance(comm_id, str) or not isinstance(data, dict):
            return None
        if comm_id in self.control_comms:
            return self._control(comm_id, data, buffers)
        model = self.models.get(comm_id)
        if model is None:
            return None
        method = data.get("method")
        if method == "custom":
            custom = data.get("content")
            if isinstance(custom, dict) and custom.get("do") in ("focus", "blur") and len(custom) == 1:
                return {"comm_id": comm_id, "data": {"method": "custom", "content": custom}}, []
            return None
        if method not in ("update", "echo_update") or not isinstance(data.get("state"), dict):
            return None
        state = dict(data["state"])
        if not put_buffers(state, data.get("buffer_paths", []), buffers):
            return None
        state, paths, bufs = remove_buffers(self._state(model, state, full=False))
        return {"comm_id": comm_id, "data": {"method": method, "state": state, "buffer_paths": paths}}, bufs

    def comm_close(self, content: dict) -> dict | None:
        comm_id = content.get("comm_id")
        if not isinstance(comm_id, str) or (comm_id not in self.models and comm_id not in self.control_comms):
            return None
        self.models.pop(comm_id, None)
        self.control_comms.discard(comm_id)
        return {"comm_id": comm_id, "data": {}}

    def _control(self, comm_id: str, data: dict, buffers: list[bytes]) -> tuple[dict, list[bytes]] | None:
        """`update_states`: the state of every widget, which the frontend asks for when a page loads."""
        states = data.get("states")
        if data.get("method") != "update_states" or not isinstance(states, dict):
            return None
        states = {k: dict(v) if isinstance(v, dict) else v for k, v in states.items()}
        for entry in states.values():
            if isinstance(entry, dict) and isinstance(entry.get("state"), dict):
                entry["state"] = dict(entry["state"])
        if not put_buffers(states, data.get("buffer_paths", []), buffers):
            return None
        kept: dict[str, Any] = {}
        for model_id, entry in states.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("state"), dict):
                continue
            state = entry["state"]
            model = self._model(state)
            if model is None or (entry.get("model_module"), entry.get("model_name")) != (
                model.module,
                model.name,
            ):
                continue
            if model_id not in self.models and len(self.models) >= MAX_COMMS:
                continue
            self.models[model_id] = model
            version = entry.get("model_module_version")
            kept[model_id] = {
                "model_name": model.name,
                "model_module": model.module,
                "model_module_version": version
                if isinstance(version, str) and _VERSION.fullmatch(version)
                else "",
                "state": self._state(model, state, full=True),
            }
        kept, paths, bufs = remove_buffers(kept)
        return {
            "comm_id": comm_id,
            "data": {"method": "update_states", "states": kept, "buffer_paths": paths},
        }, bufs

    # -- models and their state ---------------------------------------------------------------------

    def _modules(self) -> frozenset[str]:
        return BASE_MODULES | self.options.widget_modules

    def _model(self, state: dict) -> Model | None:
        module, name = state.get("_model_module"), state.get("_model_name")
        view_module = state.get("_view_module")
        if not isinstance(module, str) or not isinstance(name, str) or module not in self._modules():
            return None
        if view_module is not None and view_module not in self._modules():
            return None
        if module in BASE_MODULES:
            fields = installed_models().get((module, name))
            if fields is None:
                return None
            return Model(module, name, fields)
        if name in REFUSED_MODELS:
            return None
        return Model(module, name, None)

    def _state(self, model: Model, state: dict, full: bool) -> dict:
        out: dict[str, Any] = {}
        for key, value in state.items():
            if not isinstance(key, str) or _inline_code(key):
                continue
            if model.fields is not None and key not in model.fields:
                continue
            if key in IDENTITY:
                if full and self._identity_ok(model, key, value):
                    out[key] = value
                continue
            if key in VERSIONS:
                if isinstance(value, str) and _VERSION.fullmatch(value):
                    out[key] = value
                continue
            if key in _tracked_keys(model):
                model.tracked[key] = value
                continue
            kept = self._field(model, key, value)
            if kept is not _DROP:
                out[key] = kept
        touched = [
            k for k in _tracked_keys(model) if k in state and (model.fields is None or k in model.fields)
        ]
        if touched:
            out.update(self._tracked(model, touched))
        return out

    def _identity_ok(self, model: Model, key: str, value: Any) -> bool:
        if key == "_model_module":
            return value == model.module
        if key == "_model_name":
            return value == model.name
        if key == "_view_module":
            return value is None or value in self._modules()
        return value is None or (isinstance(value, str) and (model.fields is None or value in _view_names()))

    def _tracked(self, model: Model, touched: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "format" in touched and model.tracked.get("format") in MEDIA_FORMATS[model.name]:
            out["format"] = model.tracked["format"]
        if "description" in touched or "description_allow_html" in touched:
            desc = model.tracked.get("description")
            allow_html = model.tracked.get("description_allow_html") is True
            if isinstance(desc, str):
                out["description"] = sanitize_html(desc) if allow_html else desc
            if model.fields is None or "description_allow_html" in model.fields:
                out["description_allow_html"] = allow_html
        return out

    def _field(self, model: Model, key: str, value: Any) -> Any:
        if isinstance(value, bytes):
            return (
                value if model.fields is None or (key == "value" and model.name in MEDIA_FORMATS) else _DROP
            )
        if not _json_ok(value):
            return _DROP
        if key == "value" and model.name in HTML_VALUE_MODELS:
            return sanitize_html(value) if isinstance(value, str) else _DROP
        if key == "outputs" and model.name == "OutputModel":
            if not isinstance(value, list):
                return _DROP
            outputs = [filter_output(o, self.options, self.allowed) for o in value]
            return [o for o in outputs if o is not None]
        if key == "_dom_classes":
            ok = isinstance(value, list) and all(isinstance(c, str) and _CLASS.fullmatch(c) for c in value)
            return value if ok else _DROP
        if model.name == "LayoutModel" or model.name.endswith("StyleModel"):
            return value if _css_field(key, value) else _DROP
        return value


_DROP = object()


def _tracked_keys(model: Model) -> tuple[str, ...]:
    """Fields whose meaning depends on another field: filtered from the model's merged state."""
    return (
        ("description", "description_allow_html", "format")
        if model.name in MEDIA_FORMATS
        else (
            "description",
            "description_allow_html",
        )
    )


def _inline_code(key: str) -> bool:
    """Fields that carry code or stylesheets for the browser (anywidget and the like)."""
    low = key.lower()
    return low in ("_esm", "_css", "_module", "_anywidget_id") or low.endswith(("_esm", "_css", "_js", ".js"))


def _css_field(key: str, value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float):
        return True
    if isinstance(value, str) and value.startswith("IPY_MODEL_"):
        return _CLASS.fullmatch(value[len("IPY_MODEL_") :]) is not None
    if not isinstance(value, str):
        return False
    if key == "grid_template_areas":
        return _GRID_AREAS.fullmatch(value) is not None
    return css_value_ok(value)


@functools.cache
def _view_names() -> frozenset[str]:
    """The `_view_name`s of the installed widget classes."""
    import ipywidgets

    names: set[str] = set()
    stack = [ipywidgets.Widget]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        trait = cls.class_traits().get("_view_name")
        if trait is not None and isinstance(trait.default_value, str):
            names.add(trait.default_value)
    return frozenset(names)
