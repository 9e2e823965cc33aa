"""REST handlers for flows: GET /openshell/api/flows (paged) and the websocket /openshell/api/flows/stream.

Both take `after=<seq>` (a record's `seq`, or the previous answer's `next_after`) and then send only later
records, so a client pages, or resumes a dropped stream, without repeats or gaps. Only records of
sandboxes the user owns are ever sent.
They must never return another user's flows.
"""

from __future__ import annotations

import asyncio
import json

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from tornado import web, websocket

from ..base import API_PREFIX, AUTH_RESOURCE, ApiError, OpenShellAPIHandler, query_int


def _after(handler: web.RequestHandler) -> int | None:
    raw = handler.get_query_argument("after", None)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ApiError(400, f"query parameter 'after' must be a flow's seq (an integer >= 0), got {raw!r}")
    return value


def _selected(handler: JupyterHandler, owned: dict[str, float | None]) -> dict[str, float | None]:
    name = handler.get_query_argument("sandbox", None)
    if name is None:
        return owned
    if name not in owned:
        raise ApiError(404, f"no sandbox named {name!r}")
    return {name: owned[name]}


class FlowsHandler(OpenShellAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        owned = await asyncio.to_thread(self.openshell.sandboxes.owned_instances, self.owner)
        names = _selected(self, owned)
        limit = query_int(self, "limit", 200, 1, 1000)
        records, next_after = await asyncio.to_thread(self.openshell.flows.query, names, _after(self), limit)
        self.reply({"flows": records, "next_after": next_after, "limit": limit})


class FlowStreamHandler(JupyterHandler, websocket.WebSocketHandler):
    """Pushes JSON messages {"flows": [...], "next_after": seq} as the proxy logs new decisions."""

    auth_resource = AUTH_RESOURCE

    @ws_authenticated
    async def get(self, *args, **kwargs) -> None:
        user = self.current_user
        if not await ensure_async(self.authorizer.is_authorized(self, user, "read", AUTH_RESOURCE)):
            raise web.HTTPError(403)
        openshell = self.settings["openshell"]
        owned = openshell.sandboxes.owned_names(openshell.owner_of(user))
        name = self.get_query_argument("sandbox", None)
        if name is not None and name not in owned:
            raise web.HTTPError(404, f"no sandbox named {name!r}")
        self._name = name
        self._after = _after(self)
        self._task: asyncio.Task | None = None
        res = super().get(*args, **kwargs)
        if res is not None:
            await res

    def open(self, *args, **kwargs) -> None:  # type: ignore[override]
        self._task = asyncio.ensure_future(self._pump())

    def _allowed(self) -> dict[str, float | None]:
        openshell = self.settings["openshell"]
        owned = openshell.sandboxes.owned_instances(openshell.owner_of(self.current_user))
        return owned if self._name is None else {n: c for n, c in owned.items() if n == self._name}

    async def _pump(self) -> None:
        try:
            async for batch in self.settings["openshell"].flows.follow(self._allowed, self._after):
                message = {"flows": batch, "next_after": batch[-1]["seq"]}
                await self.write_message(json.dumps(message, default=str))
        except websocket.WebSocketClosedError:
            pass

    def on_message(self, message) -> None:  # clients only listen
        pass

    def on_close(self) -> None:
        if self._task:
            self._task.cancel()


handlers = [
    (rf"{API_PREFIX}/flows", FlowsHandler),
    (rf"{API_PREFIX}/flows/stream", FlowStreamHandler),
]
