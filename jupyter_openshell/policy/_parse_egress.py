"""`network.egress` of a policy: allow/deny rules by host (names, wildcards that never cover a public
suffix, IPs, CIDRs), ports, methods, paths (globs, normalised), query and the addresses a rule may reach,
and `- preset: NAME` entries expanded in place; then warnings for rules an earlier one shadows.

A mixin of the validator (`_parse._Validator`): problems become issues with file, line and field. It must
never accept a wildcard that covers a public suffix, nor guess a missing action.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from ._coverage import shadowed
from ._errors import BadRequest
from ._keys import ACTIONS, PATH_KEYS, PRESET_KEYS, RULE_KEYS, STANDARD_METHODS
from ._model import EgressRule, PathRule
from ._normalize import DEFAULT_PORTS, normalize_host, normalize_path
from ._presets import expand_preset, preset_names
from ._validator import Loc, Validator, did_you_mean, is_int, key_loc, node_loc, type_name, val_loc

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
_METHOD_TOKEN = re.compile(r"[A-Z][A-Z0-9_-]{0,31}\Z")


class EgressParser(Validator):
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
            field, iloc = f"network.egress[{i}]", val_loc(node, i, loc)
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
        ploc = val_loc(node, "preset", loc)
        name = node["preset"]
        if not isinstance(name, str) or name not in names:
            text = name.lower() if isinstance(name, str) else ""
            close = difflib.get_close_matches(text, names, n=1, cutoff=0.5) if text else []
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.error(
                ploc,
                f"{field}.preset",
                f"unknown preset {type_name(name)}{hint}",
                "one of: " + ", ".join(names),
                f"preset: {names[0]}",
            )
            return []
        addresses = (
            self.addresses(node["addresses"], f"{field}.addresses", val_loc(node, "addresses", loc))
            if "addresses" in node
            else ()
        )
        line = node_loc(node, loc)[0]
        out = []
        for j, rule_dict in enumerate(expand_preset(name)):
            rule = self.rule(rule_dict, f"{field}.preset[{name}][{j}]", loc, index)
            if rule is not None:
                out.append(replace(rule, line=line, preset=name, addresses=addresses))
        return out

    def rule(self, node: Any, field: str, loc: Loc, index: int) -> EgressRule | None:
        ex = 'host: "api.example.com"\naction: allow'
        if not self.mapping(node, field, loc, RULE_KEYS, ex):
            return None
        before = len(self.errors)
        host = None
        if "host" in node:
            host = self.host_pattern(node["host"], f"{field}.host", val_loc(node, "host", loc))
        action = None
        if "action" not in node:
            self.error(loc, field, "rule has no `action`", "action: allow or action: deny", "action: allow")
        else:
            action = self.choice(
                node["action"], f"{field}.action", val_loc(node, "action", loc), ACTIONS, "action: allow"
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
            aloc = val_loc(node, "addresses", loc)
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
            self.methods(node["methods"], f"{field}.methods", val_loc(node, "methods", loc))
            if "methods" in node
            else None
        )
        query = (
            self.query(node["query"], f"{field}.query", val_loc(node, "query", loc))
            if "query" in node
            else ()
        )
        paths = None
        if "paths" in node:
            paths = self.paths(node["paths"], f"{field}.paths", val_loc(node, "paths", loc))
        if len(self.errors) > before or action is None:
            return None
        line = node_loc(node, loc)[0]
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
            ifield, iloc = f"{field}[{i}]", val_loc(node, i, loc)
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
                key_loc(node, "ports", loc),
                f"{field}.ports",
                "both `port` and `ports` are set",
                "one of them",
                "ports: [80, 443]",
            )
            return default
        if "port" in node:
            p = node["port"]
            ploc = val_loc(node, "port", loc)
            if not self.port_ok(p, f"{field}.port", ploc):
                return default
            return (int(p),)
        if "ports" in node:
            ps = node["ports"]
            ploc = val_loc(node, "ports", loc)
            if not self.seq(ps, f"{field}.ports", ploc, "port numbers", "ports: [80, 443]"):
                return default
            if not ps:
                self.error(ploc, f"{field}.ports", "empty list of ports", "at least one port", "ports: [443]")
            ok = [self.port_ok(p, f"{field}.ports[{i}]", val_loc(ps, i, ploc)) for i, p in enumerate(ps)]
            if all(ok) and ps:
                return tuple(sorted({int(p) for p in ps}))
        return default

    def port_ok(self, p: Any, field: str, loc: Loc) -> bool:
        if not is_int(p) or not 0 < p < 65536:
            self.error(
                loc, field, f"expected a port number, got {type_name(p)}", "an integer 1-65535", "port: 8443"
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
            mloc = val_loc(node, i, loc)
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
                    f"{type_name(m)} is not an HTTP method{hint}",
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
                f"expected a mapping of parameter to value glob(s), got {type_name(node)}",
                "a mapping",
                ex,
            )
            return ()
        out = []
        for name, value in node.items():
            vloc = val_loc(node, name, loc)
            vfield = f"{field}.{name}"
            if not isinstance(name, str) or not name:
                self.error(
                    key_loc(node, name, loc), vfield, "parameter names are non-empty strings", "a name", ex
                )
                continue
            globs = value if isinstance(value, list) else [value]
            good = []
            for j, g in enumerate(globs):
                if not isinstance(g, str):
                    gloc = val_loc(value, j, vloc) if isinstance(value, list) else vloc
                    self.error(
                        gloc,
                        vfield,
                        f"expected a value glob string, got {type_name(g)}",
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
            iloc = val_loc(node, i, loc)
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
            p = self.path_glob(item["path"], f"{ifield}.path", val_loc(item, "path", iloc))
            methods = (
                self.methods(item["methods"], f"{ifield}.methods", val_loc(item, "methods", iloc))
                if "methods" in item
                else None
            )
            query = (
                self.query(item["query"], f"{ifield}.query", val_loc(item, "query", iloc))
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

    # warnings

    def shadowing(self, rules: tuple[EgressRule, ...], doc: Any) -> None:
        egress = doc.get("network", {}).get("egress") if isinstance(doc.get("network"), dict) else None
        for later, earlier in shadowed(rules):
            if later.entry == earlier.entry:
                continue  # two rules of one preset
            loc = val_loc(egress, later.entry, (later.line, 1)) if egress is not None else (later.line, 1)
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
