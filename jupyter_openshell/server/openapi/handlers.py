"""REST handler serving the OpenAPI document at /openshell/api/openapi.json.
It must never be served without authentication.
"""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..base import API_PREFIX, OpenShellAPIHandler
from .spec import openapi_document


class OpenAPIHandler(OpenShellAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(openapi_document(f"{self.base_url.rstrip('/')}{API_PREFIX}"))


handlers = [(rf"{API_PREFIX}/openapi.json", OpenAPIHandler)]
