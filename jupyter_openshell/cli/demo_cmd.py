"""`openshell demo`: prepare everything the demo notebook needs, then open JupyterLab on a working copy
of it (default ~/openshell-demo/, see `demo_workdir`; never the checkout's tracked notebook).

Prepares: the demo policy, a random demo secret for the inference route, the local upstream (data API and
fake OpenAI-compatible server on 127.0.0.2), the policy proxy, and the "openshell-demo" kernelspec (the
OpenShell kernel with that policy). Works offline, as root or not. `--check` runs the notebook headless
instead (nbclient, kernelspec in a temporary prefix) and prints PASS/FAIL per step, from each code cell's
`openshell_check` metadata {step, expect: [text in its output], widget}. It must never print or log the
secret.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..hostproc import python_argv
from .demo_upstream import HOST, PORT, DemoUpstream

KERNEL_NAME = "openshell-demo"
SECRET_NAME = "demo-openai"
NOTEBOOK = "openshell-demo.ipynb"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
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
    """The checkout's examples/ (editable install), else the copy installed under sys.prefix."""
    checkout = Path(__file__).resolve().parents[2] / "examples"
    if (checkout / NOTEBOOK).is_file():
        return checkout
    return Path(sys.prefix) / "share" / "jupyter-openshell" / "examples"


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


def preflight(*modules: str) -> None:
    """Fail at once, saying what to install or change, on what the demo cannot work without."""
    if not shutil.which("bwrap", path="/usr/bin:/bin:/usr/sbin:/sbin:/usr/local/bin"):
        raise SystemExit(
            "openshell demo: bubblewrap (bwrap) is not installed; the sandboxes need it. Install it with "
            "`apt-get install bubblewrap` (Debian/Ubuntu) or `dnf install bubblewrap` (Fedora), or run "
            "scripts/setup.sh"
        )
    for module in modules:
        try:
            __import__(module)
        except ImportError:
            raise SystemExit(
                f"openshell demo: the Python package {module!r} is missing; install the demo extras with "
                f"`pip install 'jupyter-openshell[demo]'`"
            ) from None
    from jupyter_openshell.paths import state_dir

    try:
        state_dir()
    except OSError as exc:
        raise SystemExit(
            f"openshell demo: cannot use the state directory ({exc}); point OPENSHELL_STATE_DIR at a "
            f"directory that uid {os.getuid()} may write"
        ) from None


def prepare(prefix: str | None = None, pool_size: int = 1, workspace: Path | None = None) -> Demo:
    """Set up state, upstream, proxy and kernelspec (into `prefix`; None: the real demo, into sys.prefix,
    or the user's Jupyter directories when sys.prefix is not writable)."""
    from jupyter_openshell.kernel.kernelspec import install
    from jupyter_openshell.paths import ensure_private_dir, layout, state_dir, write_private
    from jupyter_openshell.proxy import ProxyClient

    state = state_dir()
    ensure_private_dir(layout().demo_dir)
    policy_file = layout().demo_policy
    write_private(policy_file, DEMO_POLICY)
    key = f"sk-demo-{secrets.token_hex(16)}"
    ensure_private_dir(layout().secrets_dir)
    write_private(layout().secret(SECRET_NAME), key + "\n")
    try:
        upstream = DemoUpstream(key).start()
    except OSError as exc:
        raise SystemExit(
            f"openshell demo: cannot listen on {HOST}:{PORT} ({exc.strerror}); stop what uses it"
        ) from None
    started_proxy = not ProxyClient(state).is_running()
    ProxyClient(state).ensure_running()
    user = prefix is None and not os.access(sys.prefix, os.W_OK)  # e.g. a root-owned venv, run as a user
    if prefix is None:  # the real demo: the plain OpenShell kernel and the server extension, too
        from jupyter_server.extension.serverextension import toggle_server_extension_python

        toggle_server_extension_python("jupyter_openshell", enabled=True, user=user, sys_prefix=not user)
        install(user=user, prefix=None if user else sys.prefix)
    # The kernel's workspace is a scratch directory, not examples/: as root the runtime hands a workspace
    # to the sandbox's uid, which must not happen to a checkout.
    if workspace is None:
        workspace = Path(tempfile.gettempdir()) / f"openshell-demo-{os.getuid()}"
        workspace.mkdir(mode=0o755, exist_ok=True)
    where = install(
        user=user,
        prefix=None if user else prefix or sys.prefix,
        name=KERNEL_NAME,
        display_name="Python 3 (OpenShell demo sandbox)",
        policy_file=str(policy_file),
        workspace=str(workspace),
        policy_edits=True,
        pool_size=pool_size,
    )
    return Demo(upstream, policy_file, where, started_proxy)


def _output(cell: Any) -> tuple[str, bool]:
    """(text of a cell's outputs, whether it displayed a widget)."""
    text, widget = [], False
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            text.append(out["text"])
        elif out["output_type"] == "error":
            text.append("\n".join(out["traceback"]))
        elif "data" in out:
            text.append(out["data"].get("text/plain", ""))
            widget = widget or WIDGET_MIME in out["data"]
    return "".join(text), widget


def verdict(cell: Any) -> tuple[str, str, str]:
    """(step, "PASS"|"FAIL", why) of an executed code cell from its `openshell_check` metadata."""
    check = cell.metadata.get("openshell_check") or {}
    step = check.get("step") or cell.source.splitlines()[0][:60]
    text, widget = _output(cell)
    if any(o["output_type"] == "error" for o in cell.get("outputs", [])):
        last = [line for line in text.splitlines() if line.strip()]
        return step, "FAIL", "raised: " + (last[-1] if last else "an error")
    missing = [e for e in check.get("expect", []) if e not in text]
    if missing:
        return step, "FAIL", f"output lacks {missing[0]!r}; output was: {text.strip()[-300:]!r}"
    if check.get("widget") and not widget:
        return step, "FAIL", "no widget was displayed"
    return step, "PASS", ""


def check(timeout: float = 120) -> int:
    """Run the demo notebook headless on its kernel; print PASS/FAIL per step; 0 if every step passed."""
    preflight("nbclient", "openai")
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    from jupyter_openshell.proxy import ProxyError

    nb = nbformat.read(examples_dir() / NOTEBOOK, as_version=4)
    cells = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    results: list[str] = []

    def report(step: str, status: str, why: str = "") -> None:
        results.append(status)
        print(f"  {status}  {step}" + (f": {why}" if why else ""), flush=True)

    prefix = Path(tempfile.mkdtemp(prefix="openshell-demo-check-"))
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        [str(prefix / "share" / "jupyter"), *filter(None, [os.environ.get("JUPYTER_PATH")])]
    )
    workspace = Path(tempfile.mkdtemp(prefix="openshell-demo-check-ws-"))
    workspace.chmod(0o755)  # as root the sandbox's own uid must reach it
    print(f"openshell demo --check: {NOTEBOOK} on kernel '{KERNEL_NAME}', workspace {workspace}", flush=True)
    demo = None
    try:
        try:
            demo = prepare(prefix=str(prefix), pool_size=0, workspace=workspace)
        except ProxyError as exc:
            report("Start the policy proxy", "FAIL", str(exc))
        if demo is not None:
            client = NotebookClient(
                nb,
                timeout=timeout,
                kernel_name=KERNEL_NAME,
                allow_errors=True,
                resources={"metadata": {"path": str(workspace)}},
            )
            try:
                with client.setup_kernel():
                    for index, cell in cells:
                        try:
                            client.execute_cell(cell, index)
                        except (CellTimeoutError, DeadKernelError) as exc:
                            why = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
                            report(verdict(cell)[0], "FAIL", why)
                            break
                        report(*verdict(cell))
            except Exception as exc:  # the kernel (its sandbox) did not start: say why
                report("Start the OpenShell kernel", "FAIL", str(exc).strip())
    finally:
        if demo is not None:
            demo.stop()
        shutil.rmtree(prefix, ignore_errors=True)
        shutil.rmtree(workspace, ignore_errors=True)
    passed = results.count("PASS")
    ok = passed == len(cells) == len(results)
    print(f"openshell demo --check: {passed}/{len(cells)} steps passed: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def run(args: argparse.Namespace) -> int:
    if args.check:
        return check()
    from . import demo_lab, demo_workdir

    preflight("jupyterlab")
    where = args.dir or demo_workdir.default_dir()
    notebook, said = demo_workdir.working_copy(examples_dir() / NOTEBOOK, where)
    print(f"openshell demo: {said}", flush=True)
    demo = prepare()
    print(f"openshell demo: upstream on {demo.upstream.url}, kernel '{KERNEL_NAME}' in {demo.kernelspec_dir}",
          flush=True)
    argv = python_argv("jupyterlab", f"--ServerApp.root_dir={notebook.parent}", str(notebook))
    if args.no_browser:
        argv.append("--no-browser")
    if os.geteuid() == 0:
        argv.append("--allow-root")  # the kernels still run unprivileged, in their sandboxes
    if args.port:
        argv.append(f"--ServerApp.port={args.port}")
    try:
        return demo_lab.serve(argv, notebook.name, print_url=args.no_browser)
    finally:
        demo.stop()


def register(parser: argparse.ArgumentParser, argv: Sequence[str] = ()) -> None:
    parser.add_argument(
        "--no-browser", action="store_true", help="start JupyterLab without opening a browser; print the "
        "notebook's URL"
    )
    parser.add_argument("--port", type=int, default=0, help="JupyterLab's port (default: Jupyter's choice)")
    parser.add_argument(
        "--dir", type=Path, default=None, metavar="DIR",
        help="working directory of the demo: its notebook is copied there and served from there "
        "(default ~/openshell-demo; an edited copy is kept)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="run the demo notebook headless on the OpenShell kernel and print PASS/FAIL per step "
        "(exit status 1 if a step failed)",
    )
    parser.set_defaults(func=run)
