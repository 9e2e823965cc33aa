"""Start the real policy proxy (`python -m jupyter_openshell proxy`) as a subprocess on a free
loopback port for tests and benchmarks, and wait until its control API answers.
Test helpers: production code must never import them.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_openshell.hostproc import python_argv, safe_env
from jupyter_openshell.proxy import ProxyClient, ProxyError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ProxyRun:
    proc: subprocess.Popen
    port: int
    state_dir: Path
    stderr_path: Path
    client: ProxyClient
    policy_file: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ca_bundle(self) -> Path:
        return self.state_dir / "ca" / "ca-bundle.pem"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_proxy(state_dir: Path, policy_file: Path, *, workers: int = 1, upstream_ca: Path | None = None,
                resolve: dict[str, str] | None = None, env: dict[str, str] | None = None,
                extra: list[str] | None = None, wrap: list[str] | None = None,
                timeout: float = 30.0) -> ProxyRun:
    """Run `openshell proxy` with its own state dir; returns once it serves (raises with its stderr).

    `wrap` prefixes the command (e.g. `setpriv --reuid 65534 ...` to run it unprivileged)."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    port = free_port()
    argv = python_argv("jupyter_openshell", "proxy", "--policy", str(Path(policy_file).resolve()),
                       "--listen", f"127.0.0.1:{port}", "--workers", str(workers),
                       "--state-dir", str(state_dir.resolve()))
    if upstream_ca:
        argv += ["--upstream-ca", str(upstream_ca)]
    for k, v in (resolve or {}).items():
        argv += ["--resolve", f"{k}={v}"]
    argv = [*(wrap or []), *argv, *(extra or [])]
    stderr_path = state_dir / "proxy-stderr.log"
    full_env = safe_env({"OPENSHELL_STATE_DIR": str(state_dir), **(env or {})})
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                env=full_env, cwd="/")
    client = ProxyClient(state_dir)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"proxy exited with {proc.returncode}:\n{stderr_path.read_text()}")
        try:
            status = client.status()
            if status.get("listen", "").endswith(f":{port}"):
                break
        except ProxyError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"proxy did not start in {timeout}s:\n{stderr_path.read_text()}")
        time.sleep(0.05)
    return ProxyRun(proc, port, state_dir, stderr_path, client, policy_file, env or {})
