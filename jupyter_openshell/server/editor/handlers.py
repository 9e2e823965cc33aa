"""REST handlers for the policy editor: POST /openshell/api/policy/validate, GET|POST
/openshell/api/policy/presets (list | insert into a text), POST /openshell/api/policy/variants, GET
/openshell/api/docs/<page>. They never write a policy; `variants` reads only the caller's own sandbox's
policy (else 404).
"""

from __future__ import annotations

import asyncio

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..base import API_PREFIX, ApiError, OpenShellAPIHandler
from . import tools


def _text(body: dict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise ApiError(400, f"missing {key}", [{"field": key, "message": "must be text"}])
    return value


class ValidateHandler(OpenShellAPIHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        text = _text(self.json_body(), "yaml")
        self.reply(await asyncio.to_thread(tools.validate, text))


class PresetsHandler(OpenShellAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(tools.presets())

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        name, text = _text(body, "name"), _text(body, "yaml")
        self.reply(await asyncio.to_thread(tools.insert_preset, name, text))


class DocsHandler(OpenShellAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, page: str) -> None:
        self.reply(tools.docs_page(page))


class VariantsHandler(OpenShellAPIHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        method, url = _text(body, "method"), _text(body, "url")
        name = body.get("sandbox")
        current = None
        if name is not None:
            if not isinstance(name, str) or not self.openshell.sandboxes.owns(self.owner, name):
                raise ApiError(404, f"no sandbox named {name!r}")
            current = self.openshell.policies.get(name)["yaml"]
        self.reply(await asyncio.to_thread(tools.variants, method, url, current))


handlers = [
    (rf"{API_PREFIX}/policy/validate", ValidateHandler),
    (rf"{API_PREFIX}/policy/presets", PresetsHandler),
    (rf"{API_PREFIX}/policy/variants", VariantsHandler),
    (rf"{API_PREFIX}/docs/(?P<page>[\w-]+)", DocsHandler),
]
