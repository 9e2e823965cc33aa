"""REST handlers for /openshell/api/policies/<sandbox>: GET, PUT (400 with field paths), GET history.
They must never reveal or change another user's sandbox policy (404).
"""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..base import API_PREFIX, ApiError, OpenShellAPIHandler

NAME = r"(?P<name>[^/]+)"


class _PolicyBase(OpenShellAPIHandler):
    def owned(self, name: str) -> str:
        if not self.openshell.sandboxes.owns(self.owner, name):
            raise ApiError(404, f"no sandbox named {name!r}")
        return name


class PolicyHandler(_PolicyBase):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        self.reply(self.openshell.policies.get(self.owned(name)))

    @web.authenticated
    @authorized
    async def put(self, name: str) -> None:
        self.owned(name)
        ctype = self.request.headers.get("Content-Type", "")
        if ctype.startswith("application/json"):
            text = self.json_body().get("yaml")
            if not isinstance(text, str):
                raise ApiError(
                    400, "missing policy", [{"field": "yaml", "message": "must be the policy YAML"}]
                )
        else:
            text = self.request.body.decode("utf-8", errors="replace")
        self.reply(self.openshell.policies.put(name, text))


class PolicyHistoryHandler(_PolicyBase):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        self.reply({"name": name, "history": self.openshell.policies.history(self.owned(name))})


handlers = [
    (rf"{API_PREFIX}/policies/{NAME}", PolicyHandler),
    (rf"{API_PREFIX}/policies/{NAME}/history", PolicyHistoryHandler),
]
