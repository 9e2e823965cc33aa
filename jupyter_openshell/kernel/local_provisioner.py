"""`SafeLocalProvisioner`: jupyter_client's local provisioner for the kernels of every other kernelspec
that a Jupyter server with the openshell extension starts (the extension makes it the default).

Those kernels run on the host, as the user, with the notebook's directory (which a sandbox may write) as
their working directory. Python puts that directory first on `sys.path` for `python -m ipykernel_launcher`,
so a planted `ipykernel_launcher.py` would run as the user; this provisioner sets `PYTHONSAFEPATH=1` in
the kernel's environment (Python >= 3.11 then keeps the working directory off `sys.path` while it starts).
It must never change anything else about how those kernels start.
"""

from __future__ import annotations

from typing import Any

from jupyter_client.provisioning import LocalProvisioner

from jupyter_openshell.hostproc import SAFE_PYTHON

NAME = "openshell-local-provisioner"


class SafeLocalProvisioner(LocalProvisioner):  # type: ignore[misc]
    def _finalize_env(self, env: dict[str, Any]) -> None:
        super()._finalize_env(env)
        env.update(SAFE_PYTHON)


def make_default() -> None:
    """Make this provisioner the default of kernelspecs that name none (unless configured otherwise)."""
    from jupyter_client.provisioning import KernelProvisionerFactory

    factory = KernelProvisionerFactory.instance()
    if factory.default_provisioner_name == "local-provisioner":
        factory.default_provisioner_name = NAME
