"""The independent checker of the output-filter tests: is this HTML (or SVG) active in a browser?

Python's HTML parser (it decodes entities in attribute values) and an allowlist of what the filter promises:
no element that runs or loads, no event handler, no URL but http(s)/mailto links and inline raster images
(SVG: references to its own elements), no CSS url(), no id/name (DOM clobbering) or page classes.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

ACTIVE_TAGS = {
    "script",
    "iframe",
    "frame",
    "object",
    "embed",
    "applet",
    "base",
    "form",
    "meta",
    "link",
    "style",
    "noscript",
    "template",
    "math",
    "foreignobject",
    "animate",
    "set",
    "animatemotion",
    "animatetransform",
    "handler",
    "listener",
    "image",
    "feimage",
    "button",
    "input",
    "textarea",
    "select",
    "video",
    "audio",
    "source",
    "body",
    "html",
    "svg",
    "xmp",
    "portal",
    "use",
}
SVG_OK_TAGS = {
    "svg",
    "g",
    "path",
    "rect",
    "circle",
    "ellipse",
    "line",
    "polyline",
    "polygon",
    "text",
    "tspan",
    "defs",
    "use",
    "symbol",
    "clippath",
    "mask",
    "marker",
    "lineargradient",
    "radialgradient",
    "stop",
    "pattern",
    "title",
    "desc",
    "textpath",
}
RASTER = re.compile(r"data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=]*")


class _Checker(HTMLParser):
    def __init__(self, svg: bool):
        super().__init__(convert_charrefs=True)
        self.svg, self.found = svg, []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        if (tag not in SVG_OK_TAGS) if self.svg else (tag in ACTIVE_TAGS):
            self.found.append(f"<{tag}>")
        self._in_style = tag == "style"
        for name, value in attrs:
            value = value or ""
            squashed = re.sub(r"[\x00-\x20]", "", value).lower()
            if name.startswith("on") or name in (
                "srcdoc",
                "formaction",
                "action",
                "srcset",
                "background",
                "poster",
                "data",
                "codebase",
                "dynsrc",
                "lowsrc",
                "ping",
            ):
                self.found.append(f"{tag} {name}=")
            elif name in ("href", "xlink:href", "src", "cite"):
                if self.svg:
                    ok = name != "src" and squashed.startswith("#")
                elif name == "src":
                    ok = tag == "img" and RASTER.fullmatch(squashed) is not None
                else:
                    ok = squashed.startswith(("http://", "https://", "mailto:"))
                if not ok:
                    self.found.append(f"{tag} {name}={value[:40]}")
            elif name == "style" or "(" in value:
                if re.search(r"url\(\s*[^#\s]|expression|import|image|\\", value, re.I):
                    self.found.append(f"{tag} {name}={value[:40]}")
            elif name in ("id", "name") and not self.svg:
                self.found.append(f"{tag} {name}= (DOM clobbering)")
            elif name == "class" and not self.svg and value != "dataframe":
                self.found.append(f"{tag} class={value}")
            elif name == "http-equiv":
                self.found.append(f"{tag} http-equiv")

    def handle_data(self, data):
        if self._in_style and re.search(r"url\(|@import|expression", data, re.I):
            self.found.append("stylesheet")


def violations(html: str, svg: bool = False) -> list[str]:
    checker = _Checker(svg)
    checker.feed(html)
    checker.close()
    return checker.found
