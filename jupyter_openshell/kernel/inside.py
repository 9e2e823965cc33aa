"""The kernel's entry point inside the sandbox: ipykernel with every ZMQ socket on ipc, none on TCP; on a
backend whose sandboxes have an address of their own (Kubernetes pods), the five kernel sockets on TCP at
the pod's address (OPENSHELL_KERNEL_CONNECTION holds the connection file's content), reported, once bound,
on the response pipe the launcher gave it ($OPENSHELL_RESPONSE_FD).

ipykernel binds one TCP socket of its own (IOPub's pipe for output of forked subprocesses). libzmq resolves
TCP addresses with getifaddrs(), whose netlink socket the sandbox's seccomp filter refuses (EAFNOSUPPORT),
and libzmq (4.3.5, src/ip_resolver.cpp) asserts unless that errno is EINVAL or EOPNOTSUPP: it aborts.
Here the pipe is an ipc socket in the sandbox's private /tmp instead. The kernel's banner (Jupyter's
"About" / kernel info) names the sandbox and its facts. Started with `python -I` (the kernel's own modules
never come from the workspace), it puts the workspace on sys.path for the user's modules, as Jupyter does,
once it is loaded. This module runs only inside a sandbox; it must never open a network socket other than
those its connection file names.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import zmq
from ipykernel.iostream import IOPubThread
from ipykernel.ipkernel import IPythonKernel
from ipykernel.kernelapp import IPKernelApp
from traitlets import Type
from zmq.eventloop.zmqstream import ZMQStream


class SandboxIOPubThread(IOPubThread):
    def _setup_pipe_in(self) -> None:
        self._pipe_uuid = os.urandom(16)
        pipe_in = self.socket.context.socket(zmq.PULL)
        pipe_in.linger = 0
        self._pipe_addr = f"ipc://{tempfile.mkdtemp(prefix='iopub-')}/pipe"
        pipe_in.bind(self._pipe_addr)
        self._pipe_in = ZMQStream(pipe_in, self.io_loop)
        self._pipe_in.on_recv(self._handle_pipe_msg)

    def _setup_pipe_out(self):  # type: ignore[no-untyped-def]
        ctx = zmq.Context()  # a new context after fork, as ipykernel does
        pipe_out = ctx.socket(zmq.PUSH)
        pipe_out.linger = 3000
        pipe_out.connect(self._pipe_addr)
        return ctx, pipe_out


def _enforcement(value: object) -> str:
    """Per layer ({"network": "...", "resources": "cgroup v2", ...}), one line each, resources first (what
    differs from host to host)."""
    if isinstance(value, dict) and value:
        layers = sorted(value.items(), key=lambda item: item[0] != "resources")
        return "\n               ".join(f"{layer} {how}" for layer, how in layers)
    return f"resources {value}" if value else "unknown"


def sandbox_banner() -> str:
    """What the kernel runs in: sandbox, backend, enforcement, policy version (asked from the host's
    broker, so it is the version in force now). Facts the host passed in the environment; informational."""
    name = os.environ.get("OPENSHELL_SANDBOX", "?")
    try:
        facts = json.loads(os.environ.get("OPENSHELL_SANDBOX_FACTS") or "{}")
    except ValueError:
        facts = {}
    try:
        from jupyter_openshell.magics.ops import ops_for

        version = ops_for().show()["version"]
    except Exception as exc:  # the banner never fails the kernel
        version = f"unavailable ({exc})"
    lines = [
        f"OpenShell sandbox {name}",
        f"  backend:     {facts.get('backend') or '?'}" + ("  (GPU)" if facts.get("gpu") else ""),
        f"  enforcement: {_enforcement(facts.get('enforcement'))}",
        f"  policy:      {version}",
        "  Network egress goes through the OpenShell policy proxy; `%policy` shows the policy.",
    ]
    return "\n".join(lines) + "\n"


class OpenShellKernel(IPythonKernel):
    @property
    def banner(self) -> str:  # type: ignore[override]
        return f"{sandbox_banner()}\n{super().banner}"


class SandboxKernelApp(IPKernelApp):
    kernel_class = Type(OpenShellKernel, klass=IPythonKernel)

    def initialize(self, argv=None) -> None:  # type: ignore[no-untyped-def]
        super().initialize(argv)
        self._announce()

    def _announce(self) -> None:
        """TCP: tell the host, through the launcher's response pipe, where the kernel listens (bound now)."""
        fd = os.environ.pop("OPENSHELL_RESPONSE_FD", None)
        if not fd or not fd.isdigit():
            return
        bound = {
            f"{name}_port": getattr(self, f"{name}_port")
            for name in ("shell", "iopub", "stdin", "control", "hb")
        }
        try:
            os.write(int(fd), json.dumps({**bound, "ip": self.ip, "transport": self.transport}).encode())
        finally:
            os.close(int(fd))

    def init_iopub(self, context) -> None:  # type: ignore[no-untyped-def]
        self.iopub_socket = context.socket(zmq.XPUB)
        self.iopub_socket.linger = 1000
        self._apply_curve_server_options(self.iopub_socket)
        self.iopub_port = self._bind_socket(self.iopub_socket, self.iopub_port)
        self.configure_tornado_logger()
        self.iopub_thread = SandboxIOPubThread(self.iopub_socket, pipe=True, session=self.session)
        self.iopub_thread.start()
        self.iopub_socket = self.iopub_thread.background_socket


def workspace_on_path() -> None:
    """The working directory (the notebook's) on sys.path before site-packages, as IPython places it."""
    at = next((i for i, p in enumerate(sys.path) if p.endswith(("site-packages", "dist-packages"))),
              len(sys.path))
    sys.path.insert(at, os.getcwd())


def _argv(argv: list[str]) -> list[str]:
    """`argv`, plus `-f FILE` when the connection file's content came in the environment (TCP backends):
    written 0600 in a fresh private directory, and taken out of the environment."""
    text = os.environ.pop("OPENSHELL_KERNEL_CONNECTION", None)
    if text is None:
        return argv
    path = os.path.join(tempfile.mkdtemp(prefix="openshell-kernel-"), "connection.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return [*argv, "-f", path]


if __name__ == "__main__":
    workspace_on_path()
    SandboxKernelApp.launch_instance(argv=_argv(sys.argv[1:]))
