"""REST handlers for /openshell/api/sandboxes: list, create, get, delete, exec, stop, logs (owner only,
else 404).
They must never reveal another user's sandbox (404, not 403).
"""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..base import API_PREFIX, OpenShellAPIHandler, query_int

NAME = r"(?P<name>[^/]+)"


class SandboxesHandler(OpenShellAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply({"sandboxes": self.openshell.sandboxes.list(self.owner)})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        info = await self.openshell.sandboxes.create(self.owner, self.json_body())
        self.set_header("Location", f"{self.base_url.rstrip('/')}{API_PREFIX}/sandboxes/{info['name']}")
        self.reply(info, 201)


class SandboxHandler(OpenShellAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        self.reply(self.openshell.sandboxes.get(self.owner, name))

    @web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        await self.openshell.sandboxes.delete(self.owner, name)
        self.set_status(204)
        self.finish()


class SandboxExecHandler(OpenShellAPIHandler):
    @web.authenticated
    @authorized("execute")
    async def post(self, name: str) -> None:
        self.reply(await self.openshell.sandboxes.exec(self.owner, name, self.json_body()))


class SandboxStopHandler(OpenShellAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        self.reply(await self.openshell.sandboxes.stop(self.owner, name))


class SandboxLogsHandler(OpenShellAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        limit = query_int(self, "limit", 65536, 1, 1 << 20)
        self.reply(await self.openshell.sandboxes.logs(self.owner, name, limit))


handlers = [
    (rf"{API_PREFIX}/sandboxes", SandboxesHandler),
    (rf"{API_PREFIX}/sandboxes/{NAME}", SandboxHandler),
    (rf"{API_PREFIX}/sandboxes/{NAME}/exec", SandboxExecHandler),
    (rf"{API_PREFIX}/sandboxes/{NAME}/stop", SandboxStopHandler),
    (rf"{API_PREFIX}/sandboxes/{NAME}/logs", SandboxLogsHandler),
]
