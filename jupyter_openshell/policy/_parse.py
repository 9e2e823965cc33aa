"""Parse and validate policy YAML (ruamel.yaml, so every issue carries a line and column).

All errors of a document are collected and raised together as one `PolicyError`; warnings (shadowed
rules, unusual values) ride on `Policy.warnings`. This module must never accept an unknown key,
never guess a missing security-relevant value, and never read anything but the file it is given.
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import json
import posixpath
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from . import _yamlfast
from ._errors import BadRequest, Issue, PolicyError
from ._glob import path_covers
from ._limits import parse_network_limits
from ._model import (
    DEFAULT_PORTS,
    INFERENCE_HOST,
    AuthSpec,
    Backend,
    EgressRule,
    Filesystem,
    InferenceRoute,
    NetworkLimits,
    PathRule,
    Policy,
    Process,
    Resources,
)
from ._normalize import normalize_host, normalize_path
from ._presets import expand_preset, preset_names

T = TypeVar("T")
STANDARD_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
MODES = ("enforce", "audit")
ACTIONS = ("allow", "deny")
AUTH_TYPES = ("bearer", "header", "query")
# multi-label public suffixes a wildcard must not cover (single labels such as "com" always count)
PUBLIC_SUFFIXES = frozenset(
    [
        "co.uk",
        "org.uk",
        "ac.uk",
        "gov.uk",
        "me.uk",
        "com.au",
        "net.au",
        "org.au",
        "edu.au",
        "co.jp",
        "ne.jp",
        "or.jp",
        "co.nz",
        "com.br",
        "com.cn",
        "com.hk",
        "com.sg",
        "com.tw",
        "co.in",
        "co.kr",
        "co.za",
        "com.mx",
        "com.tr",
        "com.ar",
        "co.il",
        "github.io",
        "gitlab.io",
        "herokuapp.com",
        "appspot.com",
        "cloudfront.net",
        "amazonaws.com",
        "s3.amazonaws.com",
        "azurewebsites.net",
        "blob.core.windows.net",
        "vercel.app",
        "netlify.app",
        "pages.dev",
        "workers.dev",
        "web.app",
        "firebaseapp.com",
        "ngrok.io",
        "ngrok-free.app",
    ]
)

TOP_KEYS = ("mode", "network", "inference", "filesystem", "process", "resources", "gpu", "description")
NETWORK_KEYS = ("mode", "egress", "limits")
RULE_KEYS = ("host", "port", "ports", "paths", "methods", "query", "addresses", "action")
PRESET_KEYS = ("preset", "addresses")
PATH_KEYS = ("path", "methods", "query")
INFERENCE_KEYS = ("routes",)
ROUTE_KEYS = ("name", "caller_pattern", "match", "backend", "strip_caller_auth")
MATCH_KEYS = ("hosts", "paths")
BACKEND_KEYS = ("url", "auth", "addresses")
AUTH_KEYS = ("type", "token_from_secret", "header", "param")
FS_KEYS = ("read_only", "read_write", "hidden")
FS_NAME_KEYS = ("workspace_writable", "workspace_protected")  # paths relative to the workspace
PROCESS_KEYS = ("user",)
RESOURCE_KEYS = ("cpu", "memory", "pids", "disk", "timeout")

_METHOD_TOKEN = re.compile(r"[A-Z][A-Z0-9_-]{0,31}\Z")
_SECRET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+\Z")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}\Z")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|k|M|G|T)?B?\Z")
_SIZE_UNITS = {
    None: 1,
    "k": 1000,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)?\Z")
_DURATION_UNITS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

Loc = tuple[int, int]


# --- positions -----------------------------------------------------------------------------------


def _key_loc(node: Any, key: Any, fallback: Loc) -> Loc:
    try:
        line, col = node.lc.key(key)
        return line + 1, col + 1
    except Exception:
        return fallback


def _val_loc(node: Any, key: Any, fallback: Loc) -> Loc:
    try:
        if isinstance(node, CommentedSeq):
            line, col = node.lc.item(key)
        else:
            line, col = node.lc.value(key)
        return line + 1, col + 1
    except Exception:
        return fallback


def _node_loc(node: Any, fallback: Loc) -> Loc:
    lc = getattr(node, "lc", None)
    if lc is not None and lc.line is not None:
        return lc.line + 1, lc.col + 1
    return fallback


def _is_bool(x: Any) -> bool:
    return isinstance(x, bool) or type(x).__name__ == "ScalarBoolean"


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not _is_bool(x)


def _is_num(x: Any) -> bool:
    return (isinstance(x, int | float)) and not _is_bool(x)


def _type_name(x: Any) -> str:
    if x is None:
        return "nothing (null)"
    if _is_bool(x):
        return f"a boolean ({str(bool(x)).lower()})"
    if isinstance(x, dict):
        return "a mapping"
    if isinstance(x, list):
        return "a list"
    if isinstance(x, str):
        return f"the string {str(x)!r}"
    return f"{x!r}"


def did_you_mean(word: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    if not close:
        close = [c for c in choices if c.lower() == str(word).lower()]
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- the validator ---------------------------------------------------------------------------------


class _Validator:
    def __init__(self, file: str):
        self.file = file
        self.errors: list[Issue] = []
        self.warnings: list[Issue] = []

    def error(self, loc: Loc, field: str, message: str, expected: str = "", example: str = "") -> None:
        self.errors.append(Issue(self.file, loc[0], loc[1], field, message, expected, example))

    def warn(self, loc: Loc, field: str, message: str, expected: str = "", example: str = "") -> None:
        self.warnings.append(Issue(self.file, loc[0], loc[1], field, message, expected, example, "warning"))

    # generic shapes

    def mapping(self, node: Any, field: str, loc: Loc, keys: tuple[str, ...], example: str) -> bool:
        if not isinstance(node, dict):
            self.error(
                loc,
                field,
                f"expected a mapping, got {_type_name(node)}",
                "a mapping of " + ", ".join(keys),
                example,
            )
            return False
        for key in node:
            if key not in keys:
                close = difflib.get_close_matches(str(key), list(keys), n=1, cutoff=0.6)
                fix = f"rename {key!r} to {close[0]!r}" if close else f"remove {key!r}"
                self.error(
                    _key_loc(node, key, loc),
                    f"{field}.{key}" if field else str(key),
                    f"unknown key {key!r}{did_you_mean(key, keys)}",
                    "one of: " + ", ".join(keys),
                    fix,
                )
        return True

    def seq(self, node: Any, field: str, loc: Loc, what: str, example: str) -> bool:
        if not isinstance(node, list):
            self.error(
                loc, field, f"expected a list of {what}, got {_type_name(node)}", f"a list of {what}", example
            )
            return False
        return True

    def string(self, node: Any, field: str, loc: Loc, expected: str, example: str) -> str | None:
        if not isinstance(node, str) or not node:
            self.error(loc, field, f"expected {expected}, got {_type_name(node)}", expected, example)
            return None
        return str(node)

    def choice(self, node: Any, field: str, loc: Loc, choices: tuple[str, ...], example: str) -> str | None:
        if not isinstance(node, str) or node not in choices:
            hint = did_you_mean(node, choices) if isinstance(node, str) else ""
            self.error(
                loc,
                field,
                f"{_type_name(node)} is not allowed here{hint}",
                "one of: " + ", ".join(choices),
                example,
            )
            return None
        return str(node)

    # policy sections

    def policy(self, doc: Any, source: str, text: str) -> Policy:
        top: Loc = (1, 1)
        if doc is None:
            doc = CommentedMap()
        if not self.mapping(
            doc,
            "",
            top,
            TOP_KEYS,
            'network:\n  egress:\n    - host: "api.example.com"\n      action: allow\n    - action: deny',
        ):
            raise PolicyError(self.errors)
        mode = "enforce"
        modes: list[tuple[str, Loc, str]] = []
        if "mode" in doc:
            modes.append((doc["mode"], _val_loc(doc, "mode", top), "mode"))
        network = doc.get("network")
        egress: tuple[EgressRule, ...] = ()
        limits = NetworkLimits()
        if network is not None:
            nloc = _val_loc(doc, "network", top)
            if self.mapping(
                network,
                "network",
                nloc,
                NETWORK_KEYS,
                'network:\n  egress:\n    - host: "x.org"\n      action: allow',
            ):
                if "mode" in network:
                    modes.append((network["mode"], _val_loc(network, "mode", nloc), "network.mode"))
                if "egress" in network:
                    egress = self.egress(network["egress"], _val_loc(network, "egress", nloc))
                if "limits" in network:
                    limits = parse_network_limits(self, network["limits"], _val_loc(network, "limits", nloc))
        if len(modes) > 1:
            self.error(
                modes[1][1],
                modes[1][2],
                "mode is set twice (top level and under network)",
                "one `mode:` key, at the top level or under `network:`",
                "mode: audit",
            )
        for value, loc, field in modes[:1]:
            mode = self.choice(value, field, loc, MODES, "mode: enforce") or mode
        if mode == "audit":
            self.warn(
                modes[0][1],
                modes[0][2],
                "audit mode: requests the rules deny are logged and let through",
                "mode: enforce once the rules are tight",
                "mode: enforce",
            )
        routes: tuple[InferenceRoute, ...] = ()
        if doc.get("inference") is not None:
            iloc = _val_loc(doc, "inference", top)
            inf = doc["inference"]
            if (
                self.mapping(inf, "inference", iloc, INFERENCE_KEYS, "inference:\n  routes: []")
                and "routes" in inf
            ):
                routes = self.routes(inf["routes"], _val_loc(inf, "routes", iloc))
        filesystem = (
            self.filesystem(doc["filesystem"], _val_loc(doc, "filesystem", top))
            if doc.get("filesystem") is not None
            else Filesystem()
        )
        process = (
            self.process(doc["process"], _val_loc(doc, "process", top))
            if doc.get("process") is not None
            else Process()
        )
        resources = (
            self.resources(doc["resources"], _val_loc(doc, "resources", top))
            if doc.get("resources") is not None
            else Resources()
        )
        gpu = False
        if "gpu" in doc:
            if not _is_bool(doc["gpu"]):
                self.error(
                    _val_loc(doc, "gpu", top),
                    "gpu",
                    f"expected true or false, got {_type_name(doc['gpu'])}",
                    "a boolean",
                    "gpu: true",
                )
            else:
                gpu = bool(doc["gpu"])
        if "description" in doc:
            self.string(
                doc["description"],
                "description",
                _val_loc(doc, "description", top),
                "a string",
                'description: "research agent, read-only GitHub"',
            )
        if self.errors:
            raise PolicyError(sorted(self.errors, key=lambda i: (i.line, i.column)), tuple(self.warnings))
        self.shadowing(egress, doc)
        policy = Policy(
            mode=mode,
            egress=egress,
            routes=routes,
            filesystem=filesystem,
            process=process,
            resources=resources,
            gpu=gpu,
            limits=limits,
            source=source,
            text=text,
        )
        canonical = json.dumps(policy.to_dict(), sort_keys=True, separators=(",", ":"))
        version = hashlib.sha256(canonical.encode()).hexdigest()[:12]
        return Policy(
            mode=mode,
            egress=egress,
            routes=routes,
            filesystem=filesystem,
            process=process,
            resources=resources,
            gpu=gpu,
            limits=limits,
            source=source,
            text=text,
            version=version,
            warnings=tuple(self.warnings),
        )

    # network.egress

    def egress(self, node: Any, loc: Loc) -> tuple[EgressRule, ...]:
        ex = (
            '- host: "api.example.com"\n  paths:\n    - path: "/v1/**"\n'
            + '      methods: ["GET"]\n  action: allow'
        )
        if node is None:
            return ()
        if not self.seq(node, "network.egress", loc, "rules", ex):
            return ()
        rules: list[EgressRule] = []
        for i, item in enumerate(node):
            field, iloc = f"network.egress[{i}]", _val_loc(node, i, loc)
            if isinstance(item, dict) and "preset" in item:
                rules.extend(self.preset_entry(item, field, iloc, i))
            elif (rule := self.rule(item, field, iloc, i)) is not None:
                rules.append(rule)
        return tuple(replace(r, index=k) for k, r in enumerate(rules))

    def preset_entry(self, node: Any, field: str, loc: Loc, index: int) -> list[EgressRule]:
        """`- preset: NAME` (optionally with `addresses`): the preset's rules, in its place."""
        names = preset_names()
        if not self.mapping(node, field, loc, PRESET_KEYS, "preset: pypi"):
            return []
        ploc = _val_loc(node, "preset", loc)
        name = node["preset"]
        if not isinstance(name, str) or name not in names:
            text = name.lower() if isinstance(name, str) else ""
            close = difflib.get_close_matches(text, names, n=1, cutoff=0.5) if text else []
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.error(
                ploc,
                f"{field}.preset",
                f"unknown preset {_type_name(name)}{hint}",
                "one of: " + ", ".join(names),
                f"preset: {names[0]}",
            )
            return []
        addresses = (
            self.addresses(node["addresses"], f"{field}.addresses", _val_loc(node, "addresses", loc))
            if "addresses" in node
            else ()
        )
        line = _node_loc(node, loc)[0]
        out = []
        for j, rule_dict in enumerate(expand_preset(name)):
            rule = self.rule(rule_dict, f"{field}.preset[{name}][{j}]", loc, index)
            if rule is not None:
                out.append(replace(rule, line=line, preset=name, addresses=addresses))
        return out

    def each(
        self, node: Any, field: str, loc: Loc, parse: Callable[[Any, str, Loc, int], T | None]
    ) -> tuple[T, ...]:
        """Parse every item of the list `node` with `parse(item, field[i], loc, i)`; the valid ones."""
        parsed = (parse(item, f"{field}[{i}]", _val_loc(node, i, loc), i) for i, item in enumerate(node))
        return tuple(p for p in parsed if p is not None)

    def rule(self, node: Any, field: str, loc: Loc, index: int) -> EgressRule | None:
        ex = 'host: "api.example.com"\naction: allow'
        if not self.mapping(node, field, loc, RULE_KEYS, ex):
            return None
        before = len(self.errors)
        host = None
        if "host" in node:
            host = self.host_pattern(node["host"], f"{field}.host", _val_loc(node, "host", loc))
        action = None
        if "action" not in node:
            self.error(loc, field, "rule has no `action`", "action: allow or action: deny", "action: allow")
        else:
            action = self.choice(
                node["action"], f"{field}.action", _val_loc(node, "action", loc), ACTIONS, "action: allow"
            )
        if action == "allow" and "host" not in node:
            self.error(
                loc,
                field,
                "an allow rule needs a `host` (a rule without one matches every host)",
                "a host name",
                'host: "api.example.com"',
            )
        ports = self.ports(node, field, loc, None if action == "deny" else DEFAULT_PORTS)
        addresses: tuple[str, ...] = ()
        if "addresses" in node:
            aloc = _val_loc(node, "addresses", loc)
            addresses = self.addresses(node["addresses"], f"{field}.addresses", aloc)
            if action == "deny":
                self.error(
                    aloc,
                    f"{field}.addresses",
                    "`addresses` only matters on allow rules (it lets their requests reach these addresses)",
                    "no `addresses` on a deny rule",
                    "remove `addresses`",
                )
        methods = (
            self.methods(node["methods"], f"{field}.methods", _val_loc(node, "methods", loc))
            if "methods" in node
            else None
        )
        query = (
            self.query(node["query"], f"{field}.query", _val_loc(node, "query", loc))
            if "query" in node
            else ()
        )
        paths = None
        if "paths" in node:
            paths = self.paths(node["paths"], f"{field}.paths", _val_loc(node, "paths", loc))
        if len(self.errors) > before or action is None:
            return None
        line = _node_loc(node, loc)[0]
        return EgressRule(
            index=index,
            action=action,
            host=host,
            ports=ports,
            paths=paths,
            methods=methods,
            query=query,
            line=line,
            addresses=addresses,
            source_index=index,
        )

    def addresses(self, node: Any, field: str, loc: Loc) -> tuple[str, ...]:
        """IPs or CIDRs (normalised) that an allow rule's or backend's requests may connect to."""
        ex = 'addresses: ["127.0.0.1"]'
        if not self.seq(node, field, loc, "IP addresses or CIDRs", ex):
            return ()
        if not node:
            self.error(loc, field, "empty list of addresses", "at least one IP address or CIDR", ex)
        out: list[str] = []
        for i, item in enumerate(node):
            ifield, iloc = f"{field}[{i}]", _val_loc(node, i, loc)
            text = self.string(item, ifield, iloc, "an IP address or CIDR", ex)
            if text is None:
                continue
            try:
                value = str(ipaddress.ip_network(text, strict=True)) if "/" in text else None
                if value is None:
                    info = normalize_host(text)
                    if not info.is_ip:
                        raise ValueError(f"{text!r} is a name; addresses are IPs (a name would be resolved)")
                    value = info.value
            except (ValueError, BadRequest) as exc:
                self.error(iloc, ifield, f"invalid address: {exc}", "an IP address or CIDR", ex)
                continue
            if value not in out:
                out.append(value)
        return tuple(out)

    def ports(
        self, node: Any, field: str, loc: Loc, default: tuple[int, ...] | None
    ) -> tuple[int, ...] | None:
        if "port" in node and "ports" in node:
            self.error(
                _key_loc(node, "ports", loc),
                f"{field}.ports",
                "both `port` and `ports` are set",
                "one of them",
                "ports: [80, 443]",
            )
            return default
        if "port" in node:
            p = node["port"]
            ploc = _val_loc(node, "port", loc)
            if not self.port_ok(p, f"{field}.port", ploc):
                return default
            return (int(p),)
        if "ports" in node:
            ps = node["ports"]
            ploc = _val_loc(node, "ports", loc)
            if not self.seq(ps, f"{field}.ports", ploc, "port numbers", "ports: [80, 443]"):
                return default
            if not ps:
                self.error(ploc, f"{field}.ports", "empty list of ports", "at least one port", "ports: [443]")
            ok = [self.port_ok(p, f"{field}.ports[{i}]", _val_loc(ps, i, ploc)) for i, p in enumerate(ps)]
            if all(ok) and ps:
                return tuple(sorted({int(p) for p in ps}))
        return default

    def port_ok(self, p: Any, field: str, loc: Loc) -> bool:
        if not _is_int(p) or not 0 < p < 65536:
            self.error(
                loc, field, f"expected a port number, got {_type_name(p)}", "an integer 1-65535", "port: 8443"
            )
            return False
        return True

    def host_pattern(self, node: Any, field: str, loc: Loc) -> str | None:
        ex = 'host: "api.example.com"   # or "*.example.com"'
        text = self.string(node, field, loc, "a host name", ex)
        if text is None:
            return None
        if "://" in text or text.startswith("//"):
            guess = urlsplit(text if "://" in text else "http:" + text).hostname or "api.example.com"
            self.error(
                loc,
                field,
                f"{text!r} is a URL; `host` takes a host name only",
                "a host name",
                f'host: "{guess}"',
            )
            return None
        if "/" in text:
            try:
                return str(ipaddress.ip_network(text, strict=True))
            except ValueError:
                self.error(
                    loc,
                    field,
                    f"{text!r} is neither a host name nor an IP network",
                    "a host or a CIDR",
                    'host: "10.0.0.0/8"',
                )
                return None
        if not text.startswith("[") and text.count(":") == 1:
            name, _, port = text.partition(":")
            self.error(
                loc,
                field,
                f"{text!r} includes a port; ports go in `port:`",
                "a host name without port",
                f'host: "{name}"\nport: {port}',
            )
            return None
        if "*" in text:
            return self.wildcard(text, field, loc)
        try:
            return normalize_host(text).value
        except BadRequest as exc:
            self.error(loc, field, f"invalid host {text!r}: {exc}", "a host name or IP address", ex)
            return None

    def wildcard(self, text: str, field: str, loc: Loc) -> str | None:
        first, _, rest = text.partition(".")
        if text in ("*", "**") or (first in ("*", "**") and not rest):
            self.error(
                loc,
                field,
                f"{text!r} would match every host",
                "a host name or a wildcard under a domain",
                'host: "*.example.com"',
            )
            return None
        if first not in ("*", "**") or "*" in rest:
            self.error(
                loc,
                field,
                f"{text!r}: a wildcard may only be the whole first label",
                '"*.example.com" (one label) or "**.example.com" (any depth)',
                'host: "*.example.com"',
            )
            return None
        try:
            info = normalize_host(rest)
        except BadRequest as exc:
            self.error(
                loc,
                field,
                f"invalid host {text!r}: {exc}",
                "a wildcard under a domain",
                'host: "*.example.com"',
            )
            return None
        if info.is_ip:
            self.error(
                loc,
                field,
                f"{text!r}: wildcards apply to names, not IP addresses",
                "a name or a CIDR",
                'host: "10.0.0.0/8"',
            )
            return None
        if "." not in info.value or info.value in PUBLIC_SUFFIXES:
            self.error(
                loc,
                field,
                f"{text!r} covers a whole public suffix ({info.value!r})",
                "a wildcard under a registered domain",
                f'host: "*.example.{info.value}"',
            )
            return None
        return f"{first}.{info.value}"

    def methods(self, node: Any, field: str, loc: Loc) -> tuple[str, ...] | None:
        ex = 'methods: ["GET", "HEAD"]'
        if not self.seq(node, field, loc, "HTTP methods", ex):
            return None
        if not node:
            self.error(loc, field, "empty list of methods (nothing could match)", "at least one method", ex)
            return None
        out: list[str] = []
        any_method = False
        for i, m in enumerate(node):
            mloc = _val_loc(node, i, loc)
            mfield = f"{field}[{i}]"
            if m == "*":
                any_method = True
                continue
            if not isinstance(m, str) or not _METHOD_TOKEN.match(m):
                hint = ""
                if isinstance(m, str) and _METHOD_TOKEN.match(m.upper()):
                    hint = f" (methods are exact upper-case tokens: did you mean {m.upper()!r}?)"
                self.error(
                    mloc,
                    mfield,
                    f"{_type_name(m)} is not an HTTP method{hint}",
                    "an upper-case method such as " + ", ".join(STANDARD_METHODS[:7]) + ', or "*"',
                    ex,
                )
                continue
            if m not in STANDARD_METHODS:
                self.warn(
                    mloc,
                    mfield,
                    f"{m!r} is not a standard HTTP method{did_you_mean(m, STANDARD_METHODS)}",
                    "one of " + ", ".join(STANDARD_METHODS),
                    ex,
                )
            if m not in out:
                out.append(str(m))
        return None if any_method else tuple(out)

    def query(self, node: Any, field: str, loc: Loc) -> tuple[tuple[str, tuple[str, ...]], ...]:
        ex = 'query: {"api-version": "2024-*"}'
        if not isinstance(node, dict):
            self.error(
                loc,
                field,
                f"expected a mapping of parameter to value glob(s), got {_type_name(node)}",
                "a mapping",
                ex,
            )
            return ()
        out = []
        for name, value in node.items():
            vloc = _val_loc(node, name, loc)
            vfield = f"{field}.{name}"
            if not isinstance(name, str) or not name:
                self.error(
                    _key_loc(node, name, loc), vfield, "parameter names are non-empty strings", "a name", ex
                )
                continue
            globs = value if isinstance(value, list) else [value]
            good = []
            for j, g in enumerate(globs):
                if not isinstance(g, str):
                    gloc = _val_loc(value, j, vloc) if isinstance(value, list) else vloc
                    self.error(
                        gloc,
                        vfield,
                        f"expected a value glob string, got {_type_name(g)}",
                        'a string ("*" = any value)',
                        ex,
                    )
                else:
                    good.append(str(g))
            if globs and len(good) == len(globs):
                out.append((str(name), tuple(good)))
            elif not globs:
                self.error(vloc, vfield, "empty list of values", "at least one value glob", ex)
        return tuple(sorted(out))

    def paths(self, node: Any, field: str, loc: Loc) -> tuple[PathRule, ...] | None:
        ex = 'paths:\n  - path: "/v1/users/*"\n    methods: ["GET"]'
        if not self.seq(node, field, loc, "path rules", ex):
            return None
        if not node:
            self.error(loc, field, "empty list of paths (nothing could match)", "at least one path", ex)
            return None
        out = []
        for i, item in enumerate(node):
            ifield = f"{field}[{i}]"
            iloc = _val_loc(node, i, loc)
            if isinstance(item, str):
                p = self.path_glob(item, ifield, iloc)
                if p is not None:
                    out.append(PathRule(p))
                continue
            if not self.mapping(item, ifield, iloc, PATH_KEYS, 'path: "/v1/users/*"\nmethods: ["GET"]'):
                continue
            if "path" not in item:
                self.error(iloc, ifield, "path rule has no `path`", "a path glob", 'path: "/v1/**"')
                continue
            p = self.path_glob(item["path"], f"{ifield}.path", _val_loc(item, "path", iloc))
            methods = (
                self.methods(item["methods"], f"{ifield}.methods", _val_loc(item, "methods", iloc))
                if "methods" in item
                else None
            )
            query = (
                self.query(item["query"], f"{ifield}.query", _val_loc(item, "query", iloc))
                if "query" in item
                else ()
            )
            if p is not None:
                out.append(PathRule(p, methods, query))
        return tuple(out)

    def path_glob(self, node: Any, field: str, loc: Loc) -> str | None:
        ex = 'path: "/v1/users/*"   # * = one segment, ** = any depth'
        text = self.string(node, field, loc, "a path glob starting with '/'", ex)
        if text is None:
            return None
        if not text.startswith("/"):
            self.error(
                loc, field, f"{text!r} does not start with '/'", "an absolute path glob", f'path: "/{text}"'
            )
            return None
        if "?" in text:
            self.error(
                loc,
                field,
                "paths cannot contain a query; match parameters with `query:`",
                "a path without '?'",
                'path: "/search"\nquery: {"q": "*"}',
            )
            return None
        for seg in text.split("/"):
            if "**" in seg and seg != "**":
                self.error(
                    loc,
                    field,
                    f"'**' must be a whole segment (in {seg!r})",
                    '"/a/**" or "/a/**/b"',
                    'path: "/v1/**"',
                )
                return None
        try:
            return normalize_path(text)
        except BadRequest as exc:
            self.error(loc, field, f"invalid path {text!r}: {exc}", "a normal path glob", ex)
            return None

    # inference

    def routes(self, node: Any, loc: Loc) -> tuple[InferenceRoute, ...]:
        ex = (
            'routes:\n  - caller_pattern: ".*"\n    backend:\n      url: "https://api.openai.com/v1"\n'
            '      auth: {type: bearer, token_from_secret: "openai-api-key"}'
        )
        if node is None or not self.seq(node, "inference.routes", loc, "routes", ex):
            return ()
        return self.each(node, "inference.routes", loc, self.route)

    def route(self, node: Any, field: str, loc: Loc, index: int) -> InferenceRoute | None:
        ex = 'caller_pattern: ".*"\nbackend:\n  url: "https://api.openai.com/v1"'
        if not self.mapping(node, field, loc, ROUTE_KEYS, ex):
            return None
        before = len(self.errors)
        pattern = ".*"
        if "caller_pattern" in node:
            ploc = _val_loc(node, "caller_pattern", loc)
            p = self.string(
                node["caller_pattern"],
                f"{field}.caller_pattern",
                ploc,
                "a regular expression",
                'caller_pattern: "agent-.*"',
            )
            if p is not None:
                try:
                    re.compile(p)
                    pattern = p
                except re.error as exc:
                    self.error(
                        ploc,
                        f"{field}.caller_pattern",
                        f"invalid regular expression: {exc}",
                        "a Python regular expression (matched against the whole caller name)",
                        'caller_pattern: "agent-.*"',
                    )
        name = ""
        if "name" in node:
            name = (
                self.string(
                    node["name"], f"{field}.name", _val_loc(node, "name", loc), "a string", 'name: "openai"'
                )
                or ""
            )
        strip = True
        if "strip_caller_auth" in node:
            v = node["strip_caller_auth"]
            if not _is_bool(v):
                self.error(
                    _val_loc(node, "strip_caller_auth", loc),
                    f"{field}.strip_caller_auth",
                    f"expected true or false, got {_type_name(v)}",
                    "a boolean",
                    "strip_caller_auth: true",
                )
            else:
                strip = bool(v)
                if not strip:
                    self.warn(
                        _val_loc(node, "strip_caller_auth", loc),
                        f"{field}.strip_caller_auth",
                        "the caller's own Authorization reaches the backend when the route has no auth",
                        "true",
                        "strip_caller_auth: true",
                    )
        backend = None
        if "backend" not in node:
            self.error(
                loc, field, "route has no `backend`", "a backend with a url", 'backend:\n  url: "https://..."'
            )
        else:
            backend = self.backend(node["backend"], f"{field}.backend", _val_loc(node, "backend", loc))
        hosts: tuple[str, ...] = ()
        paths: tuple[str, ...] = ("/**",)
        if "match" in node:
            mloc = _val_loc(node, "match", loc)
            m = node["match"]
            if self.mapping(m, f"{field}.match", mloc, MATCH_KEYS, 'match:\n  hosts: ["inference.local"]'):
                if "hosts" in m:
                    hosts = self.route_hosts(m["hosts"], f"{field}.match.hosts", _val_loc(m, "hosts", mloc))
                if "paths" in m:
                    hl = _val_loc(m, "paths", mloc)
                    if self.seq(m["paths"], f"{field}.match.paths", hl, "path globs", 'paths: ["/v1/**"]'):
                        got = [
                            self.path_glob(p, f"{field}.match.paths[{j}]", _val_loc(m["paths"], j, hl))
                            for j, p in enumerate(m["paths"])
                        ]
                        paths = tuple(p for p in got if p) or paths
        if len(self.errors) > before or backend is None:
            return None
        if not hosts:
            hosts = tuple(dict.fromkeys((backend.host, INFERENCE_HOST)))
        return InferenceRoute(
            index=index,
            caller_pattern=pattern,
            hosts=hosts,
            paths=paths,
            backend=backend,
            strip_caller_auth=strip,
            name=name,
        )

    def route_hosts(self, node: Any, field: str, loc: Loc) -> tuple[str, ...]:
        if not self.seq(node, field, loc, "host names", 'hosts: ["inference.local"]'):
            return ()
        out = []
        for j, h in enumerate(node):
            hloc = _val_loc(node, j, loc)
            text = self.string(h, f"{field}[{j}]", hloc, "a host name", '"inference.local"')
            if text is None:
                continue
            try:
                out.append(normalize_host(text).value)
            except BadRequest as exc:
                self.error(
                    hloc, f"{field}[{j}]", f"invalid host {text!r}: {exc}", "a host name", '"inference.local"'
                )
        return tuple(out)

    def backend(self, node: Any, field: str, loc: Loc) -> Backend | None:
        ex = 'url: "https://api.openai.com/v1"'
        if not self.mapping(node, field, loc, BACKEND_KEYS, ex):
            return None
        if "url" not in node:
            self.error(loc, field, "backend has no `url`", "an http(s) URL", ex)
            return None
        uloc = _val_loc(node, "url", loc)
        url = self.string(node["url"], f"{field}.url", uloc, "an http(s) URL", ex)
        auth = None
        if "auth" in node:
            auth = self.auth(node["auth"], f"{field}.auth", _val_loc(node, "auth", loc))
        if url is None:
            return None
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            self.error(uloc, f"{field}.url", f"invalid URL {url!r}: {exc}", "an http(s) URL", ex)
            return None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.error(
                uloc, f"{field}.url", f"{url!r} is not an http(s) URL with a host", "an http(s) URL", ex
            )
            return None
        if parts.username or parts.password or parts.query or parts.fragment:
            self.error(
                uloc,
                f"{field}.url",
                "backend URL must not carry credentials, a query or a fragment "
                "(credentials come from `auth.token_from_secret`)",
                "scheme://host[:port]/path",
                ex,
            )
            return None
        del port
        try:
            host = normalize_host(parts.hostname).value
            if parts.path:
                normalize_path(parts.path)
        except BadRequest as exc:
            self.error(uloc, f"{field}.url", f"invalid URL {url!r}: {exc}", "an http(s) URL", ex)
            return None
        if auth is None and "auth" in node:
            return None
        addresses = (
            self.addresses(node["addresses"], f"{field}.addresses", _val_loc(node, "addresses", loc))
            if "addresses" in node
            else ()
        )
        return Backend.from_url(url, auth, host, addresses)

    def auth(self, node: Any, field: str, loc: Loc) -> AuthSpec | None:
        ex = 'auth:\n  type: bearer\n  token_from_secret: "openai-api-key"'
        if not self.mapping(node, field, loc, AUTH_KEYS, ex):
            return None
        before = len(self.errors)
        kind = None
        if "type" not in node:
            self.error(loc, field, "auth has no `type`", "bearer, header or query", "type: bearer")
        else:
            kind = self.choice(
                node["type"], f"{field}.type", _val_loc(node, "type", loc), AUTH_TYPES, "type: bearer"
            )
        secret = None
        if "token_from_secret" not in node:
            self.error(
                loc,
                field,
                "auth has no `token_from_secret`",
                "the name of a secret",
                'token_from_secret: "openai-api-key"',
            )
        else:
            sloc = _val_loc(node, "token_from_secret", loc)
            secret = self.string(
                node["token_from_secret"],
                f"{field}.token_from_secret",
                sloc,
                "a secret name",
                'token_from_secret: "openai-api-key"',
            )
            if secret is not None and not _SECRET_NAME.match(secret):
                self.error(
                    sloc,
                    f"{field}.token_from_secret",
                    f"{secret!r} is not a secret name",
                    "letters, digits, '.', '_' and '-' (no '/')",
                    'token_from_secret: "openai-api-key"',
                )
        header = param = None
        for key in ("header", "param"):
            if key in node:
                kloc = _val_loc(node, key, loc)
                value = self.string(node[key], f"{field}.{key}", kloc, f"a {key} name", f'{key}: "x-api-key"')
                if value is not None and not _HEADER_NAME.match(value):
                    self.error(
                        kloc,
                        f"{field}.{key}",
                        f"{value!r} is not a valid {key} name",
                        "a token",
                        f'{key}: "x-api-key"',
                    )
                if key == "header":
                    header = value
                else:
                    param = value
        if kind == "header" and header is None and "header" not in node:
            self.error(
                loc,
                field,
                "auth type `header` needs `header:` (the header name)",
                "a header name",
                'type: header\nheader: "x-api-key"',
            )
        if kind == "query" and param is None and "param" not in node:
            self.error(
                loc,
                field,
                "auth type `query` needs `param:` (the parameter name)",
                "a parameter name",
                'type: query\nparam: "key"',
            )
        if kind == "bearer" and ("header" in node or "param" in node):
            self.error(
                loc,
                field,
                "auth type `bearer` takes no `header`/`param`",
                "only type and token_from_secret",
                ex,
            )
        if len(self.errors) > before or kind is None or secret is None:
            return None
        return AuthSpec(
            type=kind, token_from_secret=secret, header=header.lower() if header else None, param=param
        )

    # static sections

    def filesystem(self, node: Any, loc: Loc) -> Filesystem:
        ex = (
            'filesystem:\n  read_only: ["/usr", "/etc"]\n  read_write: ["/workspace"]\n'
            + '  hidden: ["/etc/shadow"]'
        )
        if not self.mapping(node, "filesystem", loc, FS_KEYS + FS_NAME_KEYS, ex):
            return Filesystem()
        lists: dict[str, tuple[str, ...]] = {}
        for key in FS_KEYS:
            if key not in node or node[key] is None:
                lists[key] = ()
                continue
            kloc = _val_loc(node, key, loc)
            items = node[key]
            if not self.seq(items, f"filesystem.{key}", kloc, "absolute paths", f'{key}: ["/data"]'):
                lists[key] = ()
                continue
            got = []
            for i, p in enumerate(items):
                pfield, ploc = f"filesystem.{key}[{i}]", _val_loc(items, i, kloc)
                text = self.string(p, pfield, ploc, "an absolute path", f'{key}: ["/data"]')
                if text is None:
                    continue
                if not text.startswith("/") or "\0" in text or ".." in text.split("/"):
                    self.error(
                        ploc,
                        pfield,
                        f"{text!r} is not an absolute path without '..'",
                        "an absolute path",
                        f'{key}: ["/data"]',
                    )
                    continue
                got.append(posixpath.normpath(text).replace("//", "/"))
            lists[key] = tuple(dict.fromkeys(got))
        for p in set(lists["read_only"]) & set(lists["read_write"]):
            self.warn(
                loc,
                "filesystem",
                f"{p!r} is both read_only and read_write (read_write wins)",
                "each path in one list",
                ex,
            )
        for key in FS_NAME_KEYS:
            lists[key] = self.workspace_names(node.get(key), key, _val_loc(node, key, loc))
        return Filesystem(**lists)

    def workspace_names(self, items: Any, key: str, kloc: Loc) -> tuple[str, ...]:
        """Entries of the workspace named relative to it (`.git`, `tools/Makefile`): no globs."""
        example = f'{key}: [".git", "Makefile"]'
        if items is None:
            return ()
        if not self.seq(items, f"filesystem.{key}", kloc, "paths relative to the workspace", example):
            return ()
        got = []
        for i, p in enumerate(items):
            pfield, ploc = f"filesystem.{key}[{i}]", _val_loc(items, i, kloc)
            text = self.string(p, pfield, ploc, "a path relative to the workspace", example)
            if text is None:
                continue
            parts = text.split("/")
            if (
                text.startswith("/")
                or "\0" in text
                or any(x in ("", ".", "..") for x in parts)
                or any(c in text for c in "*?[")
            ):
                self.error(
                    ploc,
                    pfield,
                    f"{text!r} is not a path relative to the workspace (no leading '/', '.', '..', empty "
                    "parts or glob characters)",
                    "a path relative to the workspace",
                    example,
                )
                continue
            got.append(text)
        return tuple(dict.fromkeys(got))

    def process(self, node: Any, loc: Loc) -> Process:
        if not self.mapping(node, "process", loc, PROCESS_KEYS, 'process:\n  user: "sandbox"'):
            return Process()
        if "user" not in node:
            return Process()
        u = node["user"]
        uloc = _val_loc(node, "user", loc)
        if _is_int(u) and 0 <= u < 2**32 - 1:
            value: str | int = int(u)
        elif isinstance(u, str) and _USER.match(u):
            value = str(u)
        else:
            self.error(
                uloc,
                "process.user",
                f"{_type_name(u)} is not a user name or uid",
                "a user name (lower-case) or a numeric uid",
                'user: "sandbox"',
            )
            return Process()
        if value in (0, "root"):
            self.warn(
                uloc,
                "process.user",
                "code runs as root inside the sandbox",
                "an unprivileged user",
                'user: "sandbox"',
            )
        return Process(user=value)

    def resources(self, node: Any, loc: Loc) -> Resources:
        ex = 'resources:\n  cpu: 2\n  memory: "4Gi"\n  pids: 512\n  disk: "10Gi"\n  timeout: 3600'
        if not self.mapping(node, "resources", loc, RESOURCE_KEYS, ex):
            return Resources()
        d = Resources()
        values: dict[str, Any] = {}
        if node.get("cpu") is not None:
            values["cpu"] = self.cpu(node["cpu"], _val_loc(node, "cpu", loc))
        for key in ("memory", "disk"):
            if node.get(key) is not None:
                values[key] = self.size(node[key], f"resources.{key}", _val_loc(node, key, loc))
        if node.get("pids") is not None:
            p = node["pids"]
            if not _is_int(p) or not 1 <= p <= 4194304:
                self.error(
                    _val_loc(node, "pids", loc),
                    "resources.pids",
                    f"expected a process count, got {_type_name(p)}",
                    "an integer 1-4194304",
                    "pids: 256",
                )
            else:
                values["pids"] = int(p)
        if "timeout" in node and node["timeout"] is not None:
            values["timeout"] = self.duration(node["timeout"], _val_loc(node, "timeout", loc))
        values = {k: v for k, v in values.items() if v is not None}
        return Resources(**{**d.__dict__, **values})

    def cpu(self, v: Any, loc: Loc) -> float | None:
        out: float | None = None
        if _is_num(v):
            out = float(v)
        elif isinstance(v, str):
            m = re.fullmatch(r"(\d+(?:\.\d+)?)(m?)", v.strip())
            if m:
                out = float(m.group(1)) / (1000 if m.group(2) else 1)
        if out is None or not 0 < out <= 1024:
            self.error(
                loc,
                "resources.cpu",
                f"expected a CPU count, got {_type_name(v)}",
                'a number of CPUs > 0 (e.g. 0.5, 2, or "500m")',
                "cpu: 2",
            )
            return None
        return out

    def size(self, v: Any, field: str, loc: Loc) -> int | None:
        out: int | None = None
        if _is_int(v):
            out = int(v)
        elif isinstance(v, str):
            m = _SIZE.match(v.strip())
            if m:
                out = int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])
        if out is None or out < 1024**2:
            self.error(
                loc,
                field,
                f"expected a size of at least 1Mi, got {_type_name(v)}",
                "bytes, or a number with a unit: K, M, G, T (x1000) or Ki, Mi, Gi, Ti (x1024)",
                f'{field.split(".")[-1]}: "2Gi"',
            )
            return None
        return out

    def duration(self, v: Any, loc: Loc) -> float | None:
        out: float | None = None
        if _is_num(v):
            out = float(v)
        elif isinstance(v, str):
            m = _DURATION.match(v.strip())
            if m:
                out = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        if out is None or out <= 0:
            self.error(
                loc,
                "resources.timeout",
                f"expected a duration, got {_type_name(v)}",
                "seconds > 0, or a number with s, m, h or d (null for no limit)",
                "timeout: 3600",
            )
            return None
        return out

    # warnings

    def shadowing(self, rules: tuple[EgressRule, ...], doc: Any) -> None:
        egress = doc.get("network", {}).get("egress") if isinstance(doc.get("network"), dict) else None
        for later, earlier in _shadowed(rules):
            if later.entry == earlier.entry:
                continue  # two rules of one preset
            loc = _val_loc(egress, later.entry, (later.line, 1)) if egress is not None else (later.line, 1)
            what = "unreachable" if earlier.action != later.action else "redundant"
            part = f" (its preset {later.preset!r} rule for {later.host})" if later.preset else ""
            self.warn(
                loc,
                f"network.egress[{later.entry}]",
                f"rule is {what}{part}: network.egress[{earlier.entry}] ({earlier.action}) already matches "
                "every request it matches (first match wins)",
                "narrower rules above broader ones",
                f"move this rule above network.egress[{earlier.entry}], or delete it",
            )


def _first_segments(rule: EgressRule) -> frozenset[str] | None:
    """Literal first path segments a rule can match, or None if it can match any."""
    if rule.paths is None:
        return None
    segs = frozenset(p.path[1:].split("/", 1)[0] for p in rule.paths)
    return None if any("*" in s for s in segs) else segs


def _shadowed(rules: tuple[EgressRule, ...]) -> list[tuple[EgressRule, EgressRule]]:
    """(later, first earlier rule covering it) pairs. Only rules that could cover each other are
    compared: broad hosts (none, wildcard, CIDR) with everything; an exact host with the same host and
    an overlapping first path segment."""
    broad: list[int] = []
    by_host: dict[str, dict[str | None, list[int]]] = {}
    found = []
    for j, b in enumerate(rules):
        b_segs = _first_segments(b)
        cands = list(broad)
        exact = b.host is not None and "*" not in b.host and "/" not in b.host
        if exact:
            buckets = by_host.get(b.host, {})
            cands += buckets.get(None, [])
            for seg in b_segs or ():
                cands += buckets.get(seg, [])
        for i in sorted(set(cands)):
            if rule_covers(rules[i], b):
                found.append((b, rules[i]))
                break
        if exact:
            buckets = by_host.setdefault(b.host, {})
            for seg in b_segs if b_segs is not None else (None,):
                buckets.setdefault(seg, []).append(j)
        else:
            broad.append(j)
    return found


def _host_covers(a: str | None, b: str | None) -> bool:
    if a is None:
        return True
    if b is None:
        return False
    if a == b:
        return True
    if a.startswith("**."):
        return b.endswith(a[2:])
    if a.startswith("*."):
        return not b.startswith("*") and "." in b and b.split(".", 1)[1] == a[2:]
    if "/" in a and "/" not in b and "*" not in b:
        try:
            return ipaddress.ip_address(b) in ipaddress.ip_network(a)
        except ValueError:
            return False
    return False


def _ports_cover(a: tuple[int, ...] | None, b: tuple[int, ...] | None) -> bool:
    return a is None or (b is not None and set(b) <= set(a))


def _effective(
    rule_methods: tuple[str, ...] | None, entry_methods: tuple[str, ...] | None
) -> set[str] | None:
    if rule_methods is None:
        return None if entry_methods is None else set(entry_methods)
    if entry_methods is None:
        return set(rule_methods)
    return set(rule_methods) & set(entry_methods)


def _methods_cover(a: set[str] | None, b: set[str] | None) -> bool:
    return a is None or (b is not None and b <= a)


def rule_covers(a: EgressRule, b: EgressRule) -> bool:
    """Conservative: True only if rule `a` certainly matches every request rule `b` matches."""
    if not _host_covers(a.host, b.host) or not _ports_cover(a.ports, b.ports):
        return False
    if a.query and a.query != b.query:
        return False
    a_entries = (
        [(p.path, _effective(a.methods, p.methods), p.query) for p in a.paths]
        if a.paths is not None
        else [("/**", _effective(a.methods, None), ())]
    )
    b_entries = (
        [(p.path, _effective(b.methods, p.methods), p.query) for p in b.paths]
        if b.paths is not None
        else [("/**", _effective(b.methods, None), ())]
    )
    for bp, bm, bq in b_entries:
        if not any(
            path_covers(ap, bp) and _methods_cover(am, bm) and (not aq or aq == bq)
            for ap, am, aq in a_entries
        ):
            return False
    return True


# --- entry points ------------------------------------------------------------------------------------


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.allow_duplicate_keys = False
    return y


def parse_policy(text: str, source: str = "<string>") -> Policy:
    """Parse and validate policy YAML text. Raises `PolicyError` listing every error found."""
    fast = _yamlfast.load(text)
    try:
        doc = fast[0] if fast is not None else _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        message = " ".join(str(s) for s in (exc.context, exc.problem) if s)
        raise PolicyError(
            [
                Issue(
                    source,
                    line,
                    col,
                    "",
                    f"not valid YAML: {message}",
                    "valid YAML",
                    "check indentation, quotes and brackets near this line",
                )
            ]
        ) from None
    except YAMLError as exc:
        raise PolicyError([Issue(source, 0, 0, "", f"not valid YAML: {exc}", "valid YAML", "")]) from None
    return _Validator(source).policy(doc, source, text)


def load_policy_file(path: str | Path) -> Policy:
    """Read and validate a policy file. Raises `PolicyError` (and `OSError` if it cannot be read)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(
            [Issue(str(p), 0, 0, "", f"file is not UTF-8: {exc}", "a UTF-8 YAML file", "")]
        ) from None
    return parse_policy(text, source=str(p))
