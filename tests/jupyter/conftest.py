"""Fixtures for the Jupyter tests: a real Jupyter server with the openshell extension and two users.

Users are told apart by token (alice-token, bob-token, carol-token) through a small IdentityProvider, so
ownership can be tested; the default user of `jp_fetch` is alice; carol is an OpenShell admin.
"""

from __future__ import annotations

import pytest
from jupyter_server.auth.identity import IdentityProvider, User
from pytest_jupyter.jupyter_server import *  # noqa: F403  (jp_* fixtures; pytest_plugins is root-only)

TOKENS = {"alice-token": "alice", "bob-token": "bob", "carol-token": "carol"}


class TwoUsers(IdentityProvider):
    """Token -> user, as a multi-user deployment (JupyterHub-like) would identify callers."""

    def get_user(self, handler):
        auth = handler.request.headers.get("Authorization", "")
        token = (
            auth.split(" ", 1)[1] if auth.lower().startswith("token ") else handler.get_argument("token", "")
        )
        name = TOKENS.get(token)
        if not name:
            return None
        handler._token_authenticated = True  # like Jupyter's own token auth: no XSRF cookie needed
        return User(username=name, name=name)

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
        "OpenShellExtension": {"supervise_interval": 0.3},
        "SandboxManager": {"admin_users": {"carol"}},
    }


@pytest.fixture(scope="session", autouse=True)
def _stop_proxy_at_end():
    """Creating a sandbox starts the session's proxy; never leave it running after the tests."""
    yield
    from jupyter_openshell.proxy import ProxyClient

    ProxyClient().stop()


@pytest.fixture
def bob():
    return {"Authorization": "token bob-token"}


@pytest.fixture
def carol():
    return {"Authorization": "token carol-token"}


class _Upstream:
    def __init__(self, server):
        self.server = server
        self.port = server.server_address[1]
        self.url = f"http://127.0.0.2:{self.port}"


@pytest.fixture
def upstream():
    """A plain HTTP server answering 200 'ok <path>' to everything, on 127.0.0.2: sandboxes bypass the
    proxy for 127.0.0.1 (NO_PROXY), and their own loopback has nothing on it."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            body = f"ok {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield _Upstream(server)
    server.shutdown()
    server.server_close()


@pytest.fixture
def workspace():
    """A notebook directory the sandbox's uid can reach (pytest's tmp_path is under a 0700 directory)."""
    import shutil
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp(prefix="openshell-ws-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
