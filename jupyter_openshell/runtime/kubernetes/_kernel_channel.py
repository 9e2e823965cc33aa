"""The kernel channel of the Kubernetes backend: a pod has an address of its own, so the kernel binds five
TCP ports there (`_settings.KERNEL_PORTS`, the ones the sandboxes' NetworkPolicy admits from the Jupyter
server) and the host's relay connects to them.

The kernel's connection file travels in the exec request's environment (OPENSHELL_KERNEL_CONNECTION, never a
command-line argument); once the kernel has bound its ports it writes its connection back on the exec stream
(the response-address pattern: $OPENSHELL_RESPONSE_FD, see `_exec`), so the pod needs no route to the
server. It must never accept an answer that names other ports than the ones it was given.
"""

from __future__ import annotations

import json
from typing import Any

from .._types import ExecProcess, KernelChannel, SandboxError
from ._exec import RESPONSE_ENV
from ._settings import KERNEL_PORTS

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
PYTHONPATH = "/opt/openshell/lib"  # where the runtime layer puts this package in the image


class TcpKernelChannel(KernelChannel):
    """Five TCP ports on the pod's own address."""

    def __init__(self, address: str):
        self.address = address
        self.runner = ("python3", "-m")  # (no -I: the package comes from PYTHONPATH)
        self.env = {"PYTHONPATH": PYTHONPATH}
        self.relay_base = f"tcp://{address}"
        self.relay_ports = dict(zip(CHANNELS, KERNEL_PORTS, strict=True))

    def endpoint(self) -> dict[str, Any]:
        ports = {f"{c}_port": p for c, p in self.relay_ports.items()}
        return {**ports, "ip": self.address, "transport": "tcp"}

    def launch(self, connection: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
        return [], {"OPENSHELL_KERNEL_CONNECTION": json.dumps(connection), RESPONSE_ENV: ""}

    def wait_ready(self, process: ExecProcess, timeout: float) -> None:
        answer = process.response(timeout)  # type: ignore[attr-defined]
        if answer is not None:
            try:
                bound = json.loads(answer)
            except ValueError:
                bound = None
            expected = self.endpoint()
            ports = [k for k in expected if k.endswith("_port")]
            if isinstance(bound, dict) and all(bound.get(k) == expected[k] for k in ports):
                return
            raise SandboxError(f"answered an unexpected connection ({answer[:200]!r})")
        if process.poll() is not None:
            raise SandboxError(f"exited with code {process.returncode} while starting")
        raise SandboxError(f"did not start within {timeout:.0f} s")
