"""Fixtures for the Jupyter tests: a real Jupyter server with the openshell extension and two users.

Users are told apart by token (alice-token, bob-token) through a small IdentityProvider, so ownership can be
tested; the default user of `jp_fetch` is alice.
"""

from __future__ import annotations

import pytest
from jupyter_server.auth.identity import IdentityProvider, User

TOKENS = {"alice-token": "alice", "bob-token": "bob"}


class TwoUsers(IdentityProvider):
    """Token -> user, as a multi-user deployment (JupyterHub-like) would identify callers."""

    def get_user(self, handler):
        auth = handler.request.headers.get("Authorization", "")
        token = auth.split(" ", 1)[1] if auth.lower().startswith("token ") else handler.get_argument("token", "")
        name = TOKENS.get(token)
        return User(username=name, name=name) if name else None

    @property
    def auth_enabled(self) -> bool:
        return True


@pytest.fixture
def jp_server_config():
    return {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_openshell": True},
            "identity_provider_class": TwoUsers,
            "IdentityProvider": {"token": "alice-token"},
        },
    }


@pytest.fixture
def bob():
    return {"Authorization": "token bob-token"}
