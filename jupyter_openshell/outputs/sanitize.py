"""Sanitizers for the active mime types a sandboxed kernel may display: HTML, SVG, markdown, CSS values.

HTML and SVG go through nh3 (ammonia, an html5ever-based allowlist sanitizer) with allowlists kept here:
tables, static raster images, basic formatting; no script, event handler, frame, object, form, base, meta,
<style> or external resource of any kind (a URL the browser would fetch on its own is a way around the
sandbox's egress policy). Markdown is rendered to HTML here (mistune) and then sanitized like HTML, so no
markdown renderer in the browser ever sees the kernel's text. Every function returns text that is safe to
insert with innerHTML into the Jupyter page; none of them may ever pass its input through unchanged when
the sanitizer is unavailable or fails.
"""

from __future__ import annotations

import functools
import re

import nh3

# What the browser may fetch from an <img>: inline raster images only (never data:text/html, never
# data:image/svg+xml, never a URL: the kernel's data would leave the host through the user's browser).
_RASTER_SRC = re.compile(r"data:image/(?:png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]*")
_LINK = re.compile(r"(?:https?://|mailto:)[^\s\x00-\x1f\x7f\\]+")
_FRAGMENT = re.compile(r"#[A-Za-z_][\w.:-]*")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


HTML_TAGS = _words(
    """a abbr b bdi bdo blockquote br caption center cite code col colgroup dd del details dfn div dl dt em
    figcaption figure font h1 h2 h3 h4 h5 h6 hr i img ins kbd li mark ol p pre q rp rt ruby s samp small
    span strike strong sub summary sup table tbody td tfoot th thead time tr tt u ul var wbr"""
)
_CELL = {"align", "valign", "colspan", "rowspan", "width", "height", "nowrap", "scope"}
HTML_ATTRIBUTES = {
    "*": {"title", "lang", "dir", "style", "align"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "table": {"border", "cellpadding", "cellspacing", "width", "summary"},
    "td": _CELL,
    "th": _CELL,
    "tr": {"valign"},
    "col": {"span", "width"},
    "colgroup": {"span", "width"},
    "ol": {"start", "type", "reversed"},
    "li": {"value"},
    "details": {"open"},
    "font": {"color", "size"},
    "time": {"datetime"},
    "q": {"cite"},
    "blockquote": {"cite"},
    "del": {"cite", "datetime"},
    "ins": {"cite", "datetime"},
}
# Removed with everything inside them (a disallowed element that is not here is unwrapped: its text stays).
DROP_WITH_CONTENT = _words(
    """script style noscript template iframe frame frameset object embed applet noembed noframes xmp
    plaintext title textarea select option math svg head"""
)

SVG_TAGS = _words(
    """svg g path rect circle ellipse line polyline polygon text tspan textPath defs use symbol clipPath
    mask marker linearGradient radialGradient stop pattern title desc"""
)
# Presentation properties: SVG attributes and, for the style attribute, CSS properties of an SVG.
SVG_PAINT = _words(
    """fill fill-opacity fill-rule stroke stroke-width stroke-opacity stroke-linecap stroke-linejoin
    stroke-miterlimit stroke-dasharray stroke-dashoffset opacity clip-path clip-rule mask marker-start
    marker-mid marker-end font-family font-size font-style font-weight text-anchor dominant-baseline
    alignment-baseline baseline-shift letter-spacing word-spacing text-decoration display visibility
    color stop-color stop-opacity"""
)
SVG_ATTRIBUTES = {
    "*": SVG_PAINT
    | _words(
        """id class transform style x y x1 y1 x2 y2 cx cy r rx ry dx dy d points width height viewBox
        preserveAspectRatio version offset gradientUnits gradientTransform spreadMethod fx fy patternUnits
        patternContentUnits patternTransform clipPathUnits maskUnits maskContentUnits markerUnits
        markerWidth markerHeight refX refY orient rotate textLength lengthAdjust startOffset href"""
    )
}
_SVG_NAMESPACES = {"xmlns": "http://www.w3.org/2000/svg", "xmlns:xlink": "http://www.w3.org/1999/xlink"}

# CSS: properties that can only take lengths, colours and keywords (none takes an image or a URL).
STYLE_PROPERTIES = _words(
    """color background-color opacity text-align vertical-align white-space word-break overflow-wrap
    font-weight font-style font-size font-family font-variant line-height letter-spacing text-decoration
    text-transform text-indent display width height min-width max-width min-height max-height
    margin margin-top margin-right margin-bottom margin-left padding padding-top padding-right
    padding-bottom padding-left border border-top border-right border-bottom border-left border-color
    border-style border-width border-radius border-collapse border-spacing border-top-color
    border-right-color border-bottom-color border-left-color border-top-width border-bottom-width
    border-left-width border-right-width border-top-style border-bottom-style border-left-style
    border-right-style table-layout caption-side empty-cells list-style-type overflow overflow-x
    overflow-y text-overflow float clear box-sizing flex flex-direction flex-wrap justify-content
    align-items align-self gap column-gap row-gap"""
)
SVG_STYLE_PROPERTIES = STYLE_PROPERTIES | SVG_PAINT
# A CSS value: words, numbers, colours, lengths; the only functions those properties need.
_CSS_VALUE = re.compile(r"[\w\s#.,%+\-/*!]*")
_CSS_FUNCTION = re.compile(r"([A-Za-z-]*)\(([\w\s#.,%+\-/*]*)\)")
_CSS_FUNCTIONS = frozenset({"rgb", "rgba", "hsl", "hsla", "calc", "min", "max", "clamp", "var"})
_FRAGMENT_URL = re.compile(r"url\(\s*#[A-Za-z_][\w.:-]*\s*\)")


def css_value_ok(value: str, fragment_urls: bool = False) -> bool:
    """True when `value` is a plain CSS value: no url() (but `url(#id)` where `fragment_urls`), no image
    function, no escape, no string, no comment; functions only from a short list (colours, calc)."""
    if fragment_urls:
        value = _FRAGMENT_URL.sub("none", value)
    rest = _CSS_FUNCTION.sub(lambda m: "" if m.group(1).lower() in _CSS_FUNCTIONS else "(", value)
    return "/*" not in value and _CSS_VALUE.fullmatch(rest) is not None


def clean_style(style: str, svg: bool = False) -> str | None:
    """The declarations of a style attribute whose property is allowed and whose value is plain."""
    allowed = SVG_STYLE_PROPERTIES if svg else STYLE_PROPERTIES
    kept = []
    for declaration in style.split(";"):
        name, sep, value = declaration.partition(":")
        name, value = name.strip().lower(), value.strip()
        if sep and name in allowed and value and css_value_ok(value, fragment_urls=svg):
            kept.append(f"{name}: {value}")
    return "; ".join(kept) or None


def _html_attribute(tag: str, attribute: str, value: str) -> str | None:
    if attribute == "style":
        return clean_style(value)
    if attribute == "src":
        return value if tag == "img" and _RASTER_SRC.fullmatch(value) else None
    if attribute in ("href", "cite"):
        return value if _LINK.fullmatch(value) else None
    return value


def _svg_attribute(tag: str, attribute: str, value: str) -> str | None:
    if attribute == "style":
        return clean_style(value, svg=True)
    if attribute == "href":  # xlink:href as well: only a reference to an element of this image
        return value if _FRAGMENT.fullmatch(value.strip()) else None
    if "(" in value or "\\" in value:  # fill="url(#grad)", clip-path="url(#p1)": local references only
        return value if css_value_ok(value, fragment_urls=True) else None
    return value


@functools.cache
def _html_cleaner() -> nh3.Cleaner:
    return nh3.Cleaner(
        tags=set(HTML_TAGS),
        clean_content_tags=set(DROP_WITH_CONTENT),
        attributes={k: set(v) for k, v in HTML_ATTRIBUTES.items()},
        attribute_filter=_html_attribute,
        url_schemes={"http", "https", "mailto", "data"},
        url_relative="deny",
        allowed_classes={"table": {"dataframe"}},
        filter_style_properties=set(STYLE_PROPERTIES),
        link_rel="noopener noreferrer",
    )


@functools.cache
def _svg_cleaner() -> nh3.Cleaner:
    return nh3.Cleaner(
        tags=set(SVG_TAGS),
        clean_content_tags={"script", "style", "foreignObject", "metadata", "iframe", "noscript", "template"},
        attributes={k: set(v) for k, v in SVG_ATTRIBUTES.items()},
        attribute_filter=_svg_attribute,
        url_schemes=set(),
        url_relative="pass_through",  # `_svg_attribute` lets only "#id" through
        filter_style_properties=set(SVG_STYLE_PROPERTIES),
        set_tag_attribute_values={"svg": dict(_SVG_NAMESPACES)},
        link_rel=None,
    )


def sanitize_html(text: str) -> str:
    """HTML that renders tables, images (inline raster data only), links (http/https/mailto) and formatting,
    and nothing that runs, loads, submits or restyles the page."""
    return _html_cleaner().clean(text)


def sanitize_svg(text: str) -> str:
    """An SVG image of shapes, text and gradients; no script, foreignObject, animation, link or external
    reference (href and url() may only name an element of the image itself)."""
    return _svg_cleaner().clean(text).strip()


@functools.cache
def _markdown():  # type: ignore[no-untyped-def]
    import mistune

    return mistune.create_markdown(escape=False, plugins=["table", "strikethrough", "math"])


def markdown_to_html(text: str) -> str:
    """Markdown rendered to HTML on the host, then sanitized (raw HTML inside included); math stays as
    \\(..\\) / $$..$$ text for the page's MathJax, whose 'safe' extension filters its own links."""
    return sanitize_html(_markdown()(text))
