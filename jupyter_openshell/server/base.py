"""Common base of the openshell REST handlers: authentication, authorization resource, JSON I/O, errors.

Every handler of the extension derives from `OpenShellAPIHandler`; it must never answer a request whose
user is not authenticated, and never tell a user whether another user's sandbox exists (404 only). A
5xx answer logs its cause (with the traceback) on the server log; the client gets only the message.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.base.handlers import APIHandler
from tornado import web

AUTH_RESOURCE = "openshell"
API_PREFIX = "/openshell/api"


class ApiError(Exception):
    """An error answered as JSON: {"message", "issues"?}."""

    def __init__(self, status: int, message: str, issues: list[dict] | None = None):
        super().__init__(message)
        self.status, self.message, self.issues = status, message, issues


class OpenShellAPIHandler(APIHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def openshell(self) -> Any:
        """The OpenShellExtension instance (its managers)."""
        return self.settings["openshell"]

    @property
    def owner(self) -> str:
        return self.openshell.owner_of(self.current_user)

    def json_body(self) -> dict:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise ApiError(400, f"request body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "request body must be a JSON object")
        return body

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, ApiError) and e.status >= 500:  # the server's fault: its log gets the cause
            cause = e.__cause__ or e.__context__ or e
            self.log.error(
                "openshell: %s %s answered %d: %s",
                self.request.method,
                self.request.path,
                e.status,
                e.message,
                exc_info=(type(cause), cause, cause.__traceback__),
            )
        if isinstance(e, ApiError):
            body: dict[str, Any] = {"message": e.message}
            if e.issues is not None:
                body["issues"] = e.issues
            self.clear()
            self.reply(body, e.status)
            return
        super()._handle_request_exception(e)


def query_int(handler: web.RequestHandler, name: str, default: int, lo: int, hi: int) -> int:
    raw = handler.get_query_argument(name, None)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"query parameter {name!r} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ApiError(400, f"query parameter {name!r} must be between {lo} and {hi}, got {value}")
    return value
