"""Allow rules for a request the policy refused, as dicts and as YAML text: the hint in 403 bodies,
`%policy allow`, `openshell policy explain`, the notices and the lab extension.

`rule_variants(method, url)` offers, narrowest first: exactly the request (its method and path), the
same method under the path's first segment (`/simple/**`), and the whole host (GET/HEAD for a read,
else the method; any path). A CONNECT refused before any path was seen gets host-level variants only.
`rule_for(method, url)` is the rule of one `%policy allow [METHOD] URL`: no method = GET and HEAD, a
`*`/`**` in the path is a glob. Pure; it must never offer a rule wider than its label says (the one
exception: a literal `*` in a path cannot be escaped in a glob, so it stays a wildcard).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._errors import BadRequest
from ._normalize import DEFAULT_PORTS, normalize_host, normalize_method, normalize_path, split_host_port

if TYPE_CHECKING:
    from ._model import Policy

READ_METHODS = ("GET", "HEAD")


@dataclass(frozen=True)
class RuleVariant:
    """One way to allow a refused request. `label` says what it allows; `rule` is the rule dict and
    `yaml` its YAML list item; `method` and `url` are the arguments of the `%policy allow` that adds
    it (`method` "" = GET and HEAD); `kind` is "exact", "glob" or "host"."""

    kind: str
    label: str
    rule: dict[str, Any]
    yaml: str
    method: str
    url: str

    @property
    def command(self) -> str:
        """`%policy allow ...` adding this rule."""
        return " ".join(x for x in ("%policy allow", self.method, self.url) if x)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "rule": self.rule,
            "yaml": self.yaml,
            "method": self.method,
            "url": self.url,
            "command": self.command,
        }


def _methods(method: str) -> list[str]:
    return list(READ_METHODS) if method in ("", *READ_METHODS) else [method]


def make_rule(methods: list[str] | None, host: str, port: int, path: str) -> dict[str, Any]:
    """Rule dict allowing `methods` (None: any) on `host:port` for the normalised path glob `path`."""
    rule: dict[str, Any] = {"host": host}
    if port not in DEFAULT_PORTS:
        rule["port"] = port
    if path != "/**":
        rule["paths"] = [{"path": path} if methods is None else {"path": path, "methods": methods}]
    elif methods is not None:
        rule["methods"] = methods
    rule["action"] = "allow"
    return rule


def narrowest_rule(method: str, host: str, port: int, path: str) -> dict[str, Any]:
    """Rule dict allowing exactly `method` on `host:port` `path` (all already normalised)."""
    return make_rule([method], host, port, path)


def _url(scheme: str, host: str, port: int, path: str) -> str:
    name = f"[{host}]" if ":" in host else host
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{name}{'' if port == default else f':{port}'}{path}"


def variants_for(method: str, scheme: str, host: str, port: int, path: str) -> list[RuleVariant]:
    """The variants for a normalised request (see the module docstring). `method` "CONNECT" (or an
    empty `path`): host-level only."""
    scheme = scheme if scheme in ("http", "https") else ("https" if port == 443 else "http")
    out: list[RuleVariant] = []

    def add(kind: str, label: str, methods: list[str] | None, glob: str, arg: str) -> None:
        rule = make_rule(methods, host, port, glob)
        if all(v.rule != rule for v in out):
            out.append(RuleVariant(kind, label, rule, rule_yaml(rule), arg, _url(scheme, host, port, glob)))

    where = host if port in DEFAULT_PORTS else f"{host}:{port}"
    if method == "CONNECT" or not path:
        add("host", f"GET, HEAD on any path of {where}", list(READ_METHODS), "/**", "")
        add("host", f"any method on any path of {where}", None, "/**", "*")
        return out
    add("exact", f"only {method} {path}", [method], path, method)
    first = path[1:].split("/", 1)[0]
    methods = _methods(method)
    shown = ", ".join(methods)
    arg = "" if methods == list(READ_METHODS) else method
    if first and path not in (f"/{first}/**",):
        add("glob", f"{shown} on /{first}/ and below", methods, f"/{first}/**", arg)
    add("host", f"{shown} on any path of {where}", methods, "/**", arg)
    return out


def _parse_url(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadRequest(f"{url!r} is not an absolute http(s) URL")
    netloc = parts.netloc.rpartition("@")[2]
    host_text, port = split_host_port(netloc)
    host = normalize_host(host_text).value
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80), parts.path or "/"


def rule_variants(method: str, url: str) -> list[RuleVariant]:
    """Ways to allow `METHOD url`, narrowest first: exactly it, the method under the path's first
    segment, the whole host. CONNECT: the host read-only, then the host with any method.
    Raises `BadRequest` if the URL cannot be evaluated."""
    scheme, host, port, raw_path = _parse_url(url)
    method = normalize_method(method.strip().upper()) if method.strip() else "GET"
    path = "" if method == "CONNECT" else normalize_path(raw_path)
    return variants_for(method, scheme, host, port, path)


def rule_for(method: str, url: str) -> dict[str, Any]:
    """The rule of `%policy allow [METHOD] URL`: METHOD on URL's path, where a `*` or `**` in the path
    is a glob (`https://host/**` = any path). No METHOD: GET and HEAD; `*`: any method; CONNECT: GET
    and HEAD on the whole host. Raises `BadRequest` if the URL cannot be evaluated."""
    _, host, port, raw_path = _parse_url(url)
    method = method.strip().upper()
    if method == "CONNECT":
        return make_rule(list(READ_METHODS), host, port, "/**")
    path = normalize_path(raw_path)
    if method == "*":
        return make_rule(None, host, port, path)
    methods = list(READ_METHODS) if not method else [normalize_method(method)]
    return make_rule(methods, host, port, path)


def effective_yaml(policy: Policy) -> str:
    """The effective `network.egress` rules of `policy` as a YAML list (presets expanded, each
    expansion under a comment naming its entry): what `%policy show` shows beside the file."""
    lines = []
    for rule in policy.egress:
        if rule.preset is not None:
            lines.append(f"# network.egress[{rule.entry}]: preset {rule.preset}")
        lines.append(rule_yaml(rule.to_yaml_dict()))
    return "\n".join(lines)


def _scalar(v: Any) -> str:
    if v in ("allow", "deny"):
        return str(v)
    return json.dumps(v) if isinstance(v, str | list) else str(v)


def rule_yaml(rule: dict[str, Any], indent: str = "") -> str:
    """A rule dict as one YAML list item (block style; strings JSON-quoted, which YAML accepts)."""
    lines = []
    first = True
    for key, value in rule.items():
        prefix = indent + ("- " if first else "  ")
        first = False
        if key == "paths":
            lines.append(f"{prefix}paths:")
            for entry in value:
                if isinstance(entry, str):
                    lines.append(f"{indent}    - {_scalar(entry)}")
                    continue
                sub = True
                for k, v in entry.items():
                    lines.append(f"{indent}    {'- ' if sub else '  '}{k}: {_scalar(v)}")
                    sub = False
        elif isinstance(value, dict):
            lines.append(f"{prefix}{key}: {json.dumps(value)}")
        else:
            lines.append(f"{prefix}{key}: {_scalar(value)}")
    return "\n".join(lines)
