"""A real Jupyter server process for tests: JupyterLab (or jupyter_server) on a free loopback port with a
random token, the OpenShell kernelspec in a private prefix, its log in a file; start kernels over REST.

Loopback only; never imported by production code.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .proxy import free_port


class JupyterServer:
    """`JupyterServer(tmp, root_dir).start()`; `.url`, `.token`, `.proc`, `.log_path`; `stop()` at the end."""

    def __init__(self, tmp: Path, root_dir: Path, *, app: str = "jupyterlab", pool_size: int = 0,
                 env: dict[str, str] | None = None):
        from jupyter_openshell.kernel.kernelspec import install

        self.tmp, self.root_dir, self.app = tmp, root_dir, app
        prefix = tmp / "prefix"
        install(prefix=str(prefix), pool_size=pool_size)
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "JUPYTER_PATH": str(prefix / "share" / "jupyter"),
            "JUPYTER_CONFIG_DIR": str(tmp / "config"),
            "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
            **(env or {}),
        }
        self.log_path = tmp / "server.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> JupyterServer:
        argv = [sys.executable, "-m", self.app, "--no-browser", "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={self.port}", f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={self.root_dir}", "--ServerApp.open_browser=False"]
        if os.geteuid() == 0:
            argv.append("--allow-root")
        with open(self.log_path, "wb") as log:  # (the child keeps its own copy of the fd)
            self.proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, cwd=self.root_dir)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.api("status")
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"the Jupyter server did not start:\n{self.log()}") from None
                time.sleep(0.2)

    def api(self, *path: str, body: dict | None = None, method: str | None = None) -> dict:
        url = f"{self.url}/api/{'/'.join(path)}?token={self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as resp:
            return json.loads(resp.read() or b"null")

    def start_kernel(self, name: str = "openshell") -> str:
        return self.api("kernels", body={"name": name})["id"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
