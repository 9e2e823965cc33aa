"""The openshell Jupyter server extension: wires the services, supervises the proxy, cleans up on stop.

Enabled by jupyter-config/jupyter_server_config.d/jupyter_openshell.json. Configure with traitlets, e.g.
`c.OpenShellExtension.supervise_proxy = False`, `c.SandboxManager.backend = "local"`. It must never keep a
sandbox or a pooled kernel sandbox running after the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from tornado.ioloop import PeriodicCallback
from traitlets import Bool, Enum, Float

from .editor import handlers as editor_handlers
from .flows import handlers as flows_handlers
from .flows.manager import FlowManager
from .gpu import handlers as gpu_handlers
from .kernels import handlers as kernels_handlers
from .openapi import handlers as openapi_handlers
from .policies import handlers as policies_handlers
from .policies.manager import PolicyManager
from .sandboxes import handlers as sandboxes_handlers
from .sandboxes.manager import SandboxManager
from .sandboxes.owners import server_owner


class OpenShellExtension(ExtensionApp):
    name = "openshell"
    load_other_extensions = True
    classes = [SandboxManager, PolicyManager, FlowManager]

    supervise_proxy = Bool(
        True, help="Start the policy proxy with the server and restart it if it dies."
    ).tag(config=True)
    supervise_interval = Float(5.0, help="Seconds between two checks that the proxy still serves.").tag(
        config=True
    )

    ownership = Enum(
        ["auto", "user", "server"],
        "auto",
        help="Who owns a sandbox: 'user' = the Jupyter username; 'server' = one owner for every "
        "authenticated "
        "caller (single-user servers, where token requests get random anonymous names); 'auto' = 'server' "
        "with Jupyter's stock identity providers, else 'user'.",
    ).tag(config=True)

    def owner_of(self, user: Any) -> str:
        mode = self.ownership
        if mode == "auto":
            from jupyter_server.auth.identity import IdentityProvider, PasswordIdentityProvider

            stock = (IdentityProvider, PasswordIdentityProvider)
            mode = "server" if type(self.serverapp.identity_provider) in stock else "user"
        return server_owner() if mode == "server" else user.username

    def initialize_settings(self) -> None:
        from jupyter_openshell.kernel.local_provisioner import make_default

        make_default()  # kernels of other kernelspecs keep the notebook directory off sys.path
        self.sandboxes = SandboxManager(parent=self)
        self.policies = PolicyManager(parent=self)
        self.flows = FlowManager(parent=self)
        self._supervisor: PeriodicCallback | None = None
        self._started_proxy = False

    def initialize_handlers(self) -> None:
        for module in (sandboxes_handlers, policies_handlers, flows_handlers, gpu_handlers, openapi_handlers,
                       editor_handlers, kernels_handlers):
            self.handlers.extend(module.handlers)

    async def _start_jupyter_server_extension(self, serverapp) -> None:
        from jupyter_openshell.kernel.session import cleanup_stale

        try:
            stale = await asyncio.to_thread(cleanup_stale)
        except Exception as exc:  # never keep the server from starting
            self.log.warning("openshell: could not look for stale kernel sandboxes: %s", exc)
        else:
            if stale:
                self.log.info(
                    "openshell: removed kernel sandboxes left by a dead server: %s", ", ".join(stale)
                )
        if not self.supervise_proxy:
            return
        from jupyter_openshell.services import proxy

        self._started_proxy = not await asyncio.to_thread(proxy.is_running)
        await self._ensure_proxy()
        self._supervisor = PeriodicCallback(self._ensure_proxy, self.supervise_interval * 1000)
        self._supervisor.start()

    async def _ensure_proxy(self) -> None:
        try:
            from jupyter_openshell.services import proxy

            await asyncio.to_thread(proxy.ensure_running)
        except Exception as exc:  # keep the server up; sandboxes will fail closed without the proxy
            self.log.error("openshell: the policy proxy is not running and could not be started: %s", exc)

    async def stop_extension(self) -> None:
        if self._supervisor:
            self._supervisor.stop()
        await asyncio.to_thread(self.sandboxes.stop_all)
        with contextlib.suppress(ImportError):
            from jupyter_openshell.kernel.pool import shutdown_pools

            await asyncio.to_thread(shutdown_pools)
        if self._started_proxy:  # a proxy that was already running (e.g. `openshell demo`) stays up
            from jupyter_openshell.services import proxy

            await asyncio.to_thread(proxy.stop)
