"""`openshell demo`: prepare everything the demo notebook needs, then open JupyterLab on it.

Prepares: the demo policy, a random demo secret for the inference route, the local upstream (data API and
fake OpenAI-compatible server on 127.0.0.2), the policy proxy, and the "openshell-demo" kernelspec (the
OpenShell kernel with that policy). Works offline. It must never print or log the secret.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .demo_upstream import HOST, PORT, DemoUpstream

KERNEL_NAME = "openshell-demo"
SECRET_NAME = "demo-openai"
NOTEBOOK = "openshell-demo.ipynb"
DEMO_POLICY = f"""\
# Policy of the OpenShell demo notebook: one GET allowed, everything else denied;
# LLM calls to inference.local are routed to the local fake server with the key injected by the proxy.
network:
  egress:
    - host: "{HOST}"
      ports: [{PORT}]
      paths:
        - path: "/data"
          methods: ["GET"]
      action: allow
    - action: deny
inference:
  routes:
    - name: demo-llm
      caller_pattern: ".*"
      match:
        hosts: ["inference.local"]
        paths: ["/v1/**"]
      backend:
        url: "http://{HOST}:{PORT}/v1"
        auth: {{type: bearer, token_from_secret: "{SECRET_NAME}"}}
      strip_caller_auth: true
"""


def examples_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "examples"


@dataclass
class Demo:
    upstream: DemoUpstream
    policy_file: Path
    kernelspec_dir: str
    started_proxy: bool

    def stop(self) -> None:
        """Stop the upstream, and the proxy if the demo started it."""
        from jupyter_openshell.kernel.pool import shutdown_pools
        from jupyter_openshell.proxy import ProxyClient

        self.upstream.stop()
        shutdown_pools()
        if self.started_proxy:
            ProxyClient().stop()


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def prepare(prefix: str | None = None, pool_size: int = 1) -> Demo:
    """Set up state, upstream, proxy and kernelspec (into `prefix`, default sys.prefix)."""
    from jupyter_openshell.kernel.kernelspec import install
    from jupyter_openshell.paths import state_dir, sub
    from jupyter_openshell.proxy import ProxyClient

    state = state_dir()
    policy_file = sub("demo") / "policy.yaml"
    _write_private(policy_file, DEMO_POLICY)
    key = f"sk-demo-{secrets.token_hex(16)}"
    _write_private(sub("secrets") / SECRET_NAME, key + "\n")
    try:
        upstream = DemoUpstream(key).start()
    except OSError as exc:
        raise SystemExit(
            f"openshell demo: cannot listen on {HOST}:{PORT} ({exc.strerror}); stop what uses it"
        ) from None
    started_proxy = not ProxyClient(state).is_running()
    ProxyClient(state).ensure_running()
    if prefix is None:  # the real demo: the plain OpenShell kernel and the server extension, too
        from jupyter_server.extension.serverextension import toggle_server_extension_python

        toggle_server_extension_python("jupyter_openshell", enabled=True, sys_prefix=True)
        install(prefix=sys.prefix)
    # The kernel's workspace is a scratch directory, not examples/: as root the runtime hands a workspace
    # to the sandbox's uid, which must not happen to a checkout.
    workspace = Path(tempfile.gettempdir()) / f"openshell-demo-{os.getuid()}"
    workspace.mkdir(mode=0o755, exist_ok=True)
    where = install(
        prefix=prefix or sys.prefix,
        name=KERNEL_NAME,
        display_name="Python 3 (OpenShell demo sandbox)",
        policy_file=str(policy_file),
        workspace=str(workspace),
        policy_edits=True,
        pool_size=pool_size,
    )
    return Demo(upstream, policy_file, where, started_proxy)


def run(args: argparse.Namespace) -> int:
    demo = prepare()
    print(f"openshell demo: upstream on {demo.upstream.url}, kernel '{KERNEL_NAME}' in {demo.kernelspec_dir}")
    argv = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={examples_dir()}", NOTEBOOK]
    if args.no_browser:
        argv.append("--no-browser")
    if os.geteuid() == 0:
        argv.append("--allow-root")  # the kernels still run unprivileged, in their sandboxes
    if args.port:
        argv.append(f"--ServerApp.port={args.port}")
    try:
        return subprocess.call(argv, cwd=examples_dir())
    except KeyboardInterrupt:
        return 0
    finally:
        demo.stop()


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-browser", action="store_true", help="start JupyterLab without opening a browser"
    )
    parser.add_argument("--port", type=int, default=0, help="JupyterLab's port (default: Jupyter's choice)")
    parser.set_defaults(func=run)
