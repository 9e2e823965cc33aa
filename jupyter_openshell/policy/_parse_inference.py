"""`inference.routes` of a policy: which callers' requests to which hosts and paths go to which backend
(URL, the addresses it may resolve to) with which credential (`auth`: a secret's name, never its value).

A mixin of the validator (`_parse._Validator`), built on the egress mixin (addresses, path globs). It must
never accept a secret's value where its name belongs.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from ._errors import BadRequest
from ._keys import AUTH_KEYS, AUTH_TYPES, BACKEND_KEYS, MATCH_KEYS, ROUTE_KEYS
from ._model import INFERENCE_HOST, AuthSpec, Backend, InferenceRoute
from ._normalize import normalize_host, normalize_path
from ._parse_egress import EgressParser
from ._validator import Loc, is_bool, type_name, val_loc

_SECRET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+\Z")


class InferenceParser(EgressParser):
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
            ploc = val_loc(node, "caller_pattern", loc)
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
                    node["name"], f"{field}.name", val_loc(node, "name", loc), "a string", 'name: "openai"'
                )
                or ""
            )
        strip = True
        if "strip_caller_auth" in node:
            v = node["strip_caller_auth"]
            if not is_bool(v):
                self.error(
                    val_loc(node, "strip_caller_auth", loc),
                    f"{field}.strip_caller_auth",
                    f"expected true or false, got {type_name(v)}",
                    "a boolean",
                    "strip_caller_auth: true",
                )
            else:
                strip = bool(v)
                if not strip:
                    self.warn(
                        val_loc(node, "strip_caller_auth", loc),
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
            backend = self.backend(node["backend"], f"{field}.backend", val_loc(node, "backend", loc))
        hosts: tuple[str, ...] = ()
        paths: tuple[str, ...] = ("/**",)
        if "match" in node:
            mloc = val_loc(node, "match", loc)
            m = node["match"]
            if self.mapping(m, f"{field}.match", mloc, MATCH_KEYS, 'match:\n  hosts: ["inference.local"]'):
                if "hosts" in m:
                    hosts = self.route_hosts(m["hosts"], f"{field}.match.hosts", val_loc(m, "hosts", mloc))
                if "paths" in m:
                    hl = val_loc(m, "paths", mloc)
                    if self.seq(m["paths"], f"{field}.match.paths", hl, "path globs", 'paths: ["/v1/**"]'):
                        got = [
                            self.path_glob(p, f"{field}.match.paths[{j}]", val_loc(m["paths"], j, hl))
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
            hloc = val_loc(node, j, loc)
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
        uloc = val_loc(node, "url", loc)
        url = self.string(node["url"], f"{field}.url", uloc, "an http(s) URL", ex)
        auth = None
        if "auth" in node:
            auth = self.auth(node["auth"], f"{field}.auth", val_loc(node, "auth", loc))
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
            self.addresses(node["addresses"], f"{field}.addresses", val_loc(node, "addresses", loc))
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
                node["type"], f"{field}.type", val_loc(node, "type", loc), AUTH_TYPES, "type: bearer"
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
            sloc = val_loc(node, "token_from_secret", loc)
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
                kloc = val_loc(node, key, loc)
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
