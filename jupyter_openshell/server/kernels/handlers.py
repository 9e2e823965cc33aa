"""REST handler for GET /openshell/api/kernels/<kernel id>: the sandbox of a running OpenShell kernel.

The JupyterLab extension's status bar and notifications use it to find the active notebook's sandbox. A
kernel that is not an OpenShell kernel, or whose sandbox the caller may not see, is a 404; it must never
reveal another user's sandbox.
"""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..base import API_PREFIX, ApiError, OpenShellAPIHandler

KERNEL_ID = r"(?P<kernel_id>[\w-]+)"


class KernelSandboxHandler(OpenShellAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, kernel_id: str) -> None:
        try:
            kernel = self.kernel_manager.get_kernel(kernel_id)
        except KeyError:
            raise ApiError(404, f"no kernel {kernel_id!r}") from None
        from jupyter_openshell.kernel.provisioner import OpenShellProvisioner

        provisioner = getattr(kernel, "provisioner", None)
        box = provisioner.box if isinstance(provisioner, OpenShellProvisioner) else None
        if box is None or not self.openshell.sandboxes.owns(self.owner, box.name):
            # the same answer whether it is not an OpenShell kernel or its sandbox is not the caller's
            raise ApiError(
                404, f"kernel {kernel_id!r} is not an OpenShell kernel of yours (or has not started)"
            )
        self.reply({"kernel_id": kernel_id, "sandbox": self.openshell.sandboxes.get(self.owner, box.name)})


handlers = [(rf"{API_PREFIX}/kernels/{KERNEL_ID}", KernelSandboxHandler)]
