"""`OpenShellProvisioner`: the jupyter_client kernel provisioner that runs ipykernel inside a sandbox.

Selected by the kernelspec's `metadata.kernel_provisioner` (`openshell-provisioner`), configured there:
policy_file, backend, image (docker), workspace ("" = the notebook's directory), resources, gpu,
pool_size, policy_edits, and the output filter's output_mime_types, widget_modules, trusted_output
(docs/output-filter.md).
Clients get the connection of the kernel's relay, which filters everything the kernel sends.
Interrupts travel as control messages (`interrupt_mode: message`); a restart relaunches the kernel in the
same sandbox; shutdown destroys the sandbox. It must never hand the host environment to the kernel, and a
sandbox that cannot start must fail the start at once with the reason.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import KernelProvisionerBase
from traitlets import Bool, Dict, Float, Int, List, Unicode

from jupyter_openshell.outputs.bundle import OutputOptions

from . import pool
from .session import KernelConfig, KernelSandbox


class OpenShellProvisioner(KernelProvisionerBase):
    policy_file = Unicode("", help="Policy YAML of the kernel's sandbox ('' = the default policy).").tag(
        config=True
    )
    backend = Unicode("local", help="Runtime backend (jupyter_openshell.runtime.get_backend name).").tag(
        config=True
    )
    image = Unicode(
        "", help="Container image of the sandbox (backend docker; '' = jupyter-openshell/sandbox)."
    ).tag(config=True)
    workspace = Unicode(
        "", help="Host directory mapped as the workspace ('' = the notebook's directory)."
    ).tag(config=True)
    resources = Dict(help="Resource limits passed to the sandbox (cpu, memory, pids ...).").tag(config=True)
    gpu = Bool(False, help="Give the sandbox the host's NVIDIA GPUs.").tag(config=True)
    pool_size = Int(1, help="Kernel sandboxes kept warm per configuration (0 disables the pool).").tag(
        config=True
    )
    policy_edits = Bool(False, help="Let %policy inside the kernel change its own sandbox's policy.").tag(
        config=True
    )
    output_mime_types = List(
        Unicode(),
        help="Mime types (beyond the built-in safe ones) the kernel's output may carry to the browser, "
        "as JSON, to their installed renderer: each one trusts that renderer with the sandbox's data. "
        "Script and HTML-like types are refused whatever this says.",
    ).tag(config=True)
    widget_modules = List(
        Unicode(),
        help="Widget packages (npm names, e.g. 'jupyter-leaflet') beyond @jupyter-widgets/* whose models the "
        "kernel may create; their renderers get the sandbox's widget state unchecked.",
    ).tag(config=True)
    trusted_output = Bool(
        False,
        help="DANGEROUS: pass the kernel's output to the browser unfiltered. Code in the sandbox can then "
        "run JavaScript in your Jupyter page with your login: start kernels, run code on the host, change "
        "policies. Only for kernels whose code you trust as much as your own.",
    ).tag(config=True)
    start_timeout = Float(30.0, help="Seconds a kernel may take to bind its sockets.").tag(config=True)

    box: KernelSandbox | None = None
    _config: KernelConfig | None = None

    @property
    def has_process(self) -> bool:
        return self.box is not None and self.box.process is not None

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        cwd = kwargs.pop("cwd", None) or os.getcwd()
        workspace = os.path.abspath(os.path.expanduser(self.workspace or cwd))
        policy = os.path.abspath(os.path.expanduser(self.policy_file)) if self.policy_file else ""
        self._config = KernelConfig(
            backend=self.backend,
            image=self.image,
            policy_file=policy,
            workspace=workspace,
            gpu=self.gpu,
            resources=tuple(sorted(self.resources.items())),
            policy_edits=self.policy_edits,
        )
        kwargs.pop("extra_arguments", None)
        kwargs = await super().pre_launch(**kwargs)
        kwargs.pop("env", None)  # the host environment (tokens, secrets) never reaches the sandbox
        kwargs["cmd"] = ["ipykernel_launcher"]  # the command is fixed: see KernelSandbox.launch
        return kwargs

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        assert self._config is not None
        if self.box is not None:  # restart: same sandbox, same connection
            await asyncio.to_thread(self.box.launch)
            await asyncio.to_thread(self.box.wait_ready, self.start_timeout)
        else:
            box = pool.take(self._config) if self.pool_size > 0 else None
            if box is None:
                box = await asyncio.to_thread(KernelSandbox.start, self._config, None, self.start_timeout)
            box.relay.configure(self._output_options())
            self.box = box
            if self.trusted_output:
                self.log.warning(
                    "OpenShell kernel %s: trusted_output is on, its output is NOT filtered", self.kernel_id
                )
            self.log.info("OpenShell kernel %s runs in sandbox %s", self.kernel_id, box.name)
        self.connection_info = self.box.connection_info()
        return self.connection_info

    def _output_options(self) -> OutputOptions:
        return OutputOptions(
            mime_types=frozenset(self.output_mime_types),
            widget_modules=frozenset(self.widget_modules),
            trusted=self.trusted_output,
        )

    async def post_launch(self, **kwargs: Any) -> None:
        if self._config is not None:
            pool.refill(self._config, self.pool_size)

    async def poll(self) -> int | None:
        return self.box.poll() if self.box else 0

    async def wait(self) -> int | None:
        if not self.box or not self.box.process:
            return 0
        while self.box.poll() is None:
            await asyncio.sleep(0.05)
        return await asyncio.to_thread(self.box.reap)

    async def send_signal(self, signum: int) -> None:
        if self.box:
            self.box.signal(signum)

    async def kill(self, restart: bool = False) -> None:
        if self.box:
            self.box.kill()

    async def terminate(self, restart: bool = False) -> None:
        if self.box:
            self.box.signal(signal.SIGTERM)

    async def cleanup(self, restart: bool = False) -> None:
        if restart or not self.box:
            return
        box, self.box = self.box, None
        await asyncio.to_thread(box.destroy)

    async def get_provisioner_info(self) -> dict[str, Any]:
        info = await super().get_provisioner_info()
        info["sandbox"] = self.box.name if self.box else None
        return info

    def resolve_path(self, path: str) -> str | None:
        return None  # paths inside the sandbox are not host paths; never leak the host layout
