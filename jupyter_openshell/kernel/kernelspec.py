"""Install the "Python 3 (OpenShell sandbox)" kernelspec (the packaged kernelspec/openshell/kernel.json).

Used by `jupyter openshell install` and `openshell demo`; the logos (logo-32x32.png, logo-64x64.png,
logo-svg.svg: the Launcher card) go with it. It must never overwrite a kernelspec of another name, and the
installed spec always points at this interpreter.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager

from jupyter_openshell.hostproc import python_argv

KERNEL_NAME = "openshell"
DISPLAY_NAME = "Python 3 (OpenShell sandbox)"
LOGOS_DIR = Path(__file__).parent / "logos"
LOGOS = ("logo-32x32.png", "logo-64x64.png", "logo-svg.svg")


def kernel_json(**provisioner_config: Any) -> dict:
    """The kernelspec dict; `provisioner_config` overrides entries of metadata.kernel_provisioner.config."""
    config: dict[str, Any] = {
        "policy_file": "",
        "backend": "local",
        "workspace": "",
        "resources": {},
        "gpu": False,
    }
    config.update(provisioner_config)
    return {
        # Only ever run if a Jupyter bypasses the provisioner: then it refuses instead of running unsandboxed.
        "argv": [*python_argv("jupyter_openshell.kernel.unsandboxed"), "-f", "{connection_file}"],
        "display_name": DISPLAY_NAME,
        "language": "python",
        "interrupt_mode": "message",
        "metadata": {
            "debugger": False,
            "kernel_provisioner": {"provisioner_name": "openshell-provisioner", "config": config},
        },
    }


def install(
    user: bool = False,
    prefix: str | None = None,
    name: str = KERNEL_NAME,
    display_name: str = DISPLAY_NAME,
    **provisioner_config: Any,
) -> str:
    """Install the kernelspec; returns the directory it went to."""
    spec = kernel_json(**provisioner_config)
    spec["display_name"] = display_name
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "kernel.json").write_text(json.dumps(spec, indent=2) + "\n")
        for logo in LOGOS:
            shutil.copyfile(LOGOS_DIR / logo, Path(tmp) / logo)
        return KernelSpecManager().install_kernel_spec(tmp, kernel_name=name, user=user, prefix=prefix)
