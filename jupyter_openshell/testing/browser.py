"""A real JupyterLab server and headless Chromium for browser tests (Selenium + Debian's chromium and
chromium-driver; nothing is downloaded).

`lab_server()` starts `python -m jupyterlab` on a free 127.0.0.1 port with its own Jupyter config (the
openshell server extension enabled), data and runtime directories and the given OpenShell state directory,
waits until it serves, and stops it (and its kernels) on exit. `chrome()` opens a headless Chromium that
keeps the page's console log. Loopback only; never imported by production code.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .proxy import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def missing_browser() -> str:
    """Why a browser test cannot run here ('' when it can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "needs selenium: pip install selenium"
    if not (CHROMIUM and CHROMEDRIVER):
        return "needs a headless browser: apt-get install chromium chromium-driver"
    return ""


@dataclass
class LabServer:
    url: str
    token: str
    log: Path
    data_dir: Path

    def page(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.url}/{path.lstrip('/')}{sep}token={self.token}"

    def report(self, lines: int = 40) -> str:
        """What the server knows of its kernels and the end of its log: for a failure message."""
        try:
            with urllib.request.urlopen(self.page("api/kernels"), timeout=10) as resp:
                kernels = json.loads(resp.read())
            states = "; ".join(
                f"{k['name']} {k['id'][:8]} {k['execution_state']}, {k['connections']} connection(s)"
                for k in kernels
            ) or "none"
        except (OSError, ValueError) as exc:
            states = f"unreadable ({exc})"
        tail = self.log.read_text(errors="replace").splitlines()[-lines:]
        return f"kernels: {states}\nserver log (end):\n" + "\n".join(tail)


@contextlib.contextmanager
def lab_server(tmp: Path, root_dir: Path, state_dir: Path, jupyter_path: Path,
               extra_args: tuple[str, ...] = ()) -> Iterator[LabServer]:
    port, token = free_port(), secrets.token_hex(16)
    data_dir = tmp / "data"
    config_dir = tmp / "config"
    config_dir.mkdir(exist_ok=True)
    (config_dir / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"jupyter_openshell": True}}})
    )
    # own user settings (no news prompt over the page) and workspaces, none of the real user's
    settings = tmp / "user-settings"
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True, exist_ok=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false"})
    )
    env = {
        **os.environ,
        "JUPYTER_PATH": str(jupyter_path),
        "JUPYTER_CONFIG_DIR": str(config_dir),
        "JUPYTER_DATA_DIR": str(data_dir),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "OPENSHELL_STATE_DIR": str(state_dir),
    }
    argv = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root_dir}", "--ServerApp.open_browser=False",
            f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
            "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            *extra_args]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    log_path = tmp / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log, cwd=root_dir)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(log_path.read_text()) from None
                    time.sleep(0.2)
            yield LabServer(url, token, log_path, data_dir)
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def chrome(width: int = 1400, height: int = 900) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--disable-dev-shm-usage", f"--window-size={width},{height}",
                "--disable-gpu", "--no-first-run"):
        options.add_argument(arg)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium's own sandbox refuses root
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
