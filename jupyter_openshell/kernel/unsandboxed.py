"""What the OpenShell kernelspec's `argv` runs if a Jupyter ignores its kernel provisioner: a refusal.

The provisioner (`openshell-provisioner`) always replaces the command with a kernel inside a sandbox. A
Jupyter without provisioner support (jupyter_client < 7), or one where jupyter-openshell is not installed
beside it, would run `argv` directly on the host: this module makes that fail with the reason instead of
starting an unsandboxed kernel. It must never start a kernel.
"""

from __future__ import annotations

import sys

MESSAGE = (
    "OpenShell: this kernel runs only inside a sandbox, started by the 'openshell-provisioner' kernel "
    "provisioner, but this Jupyter started its kernelspec directly (jupyter_client older than 7, or "
    "jupyter-openshell is not installed in the Jupyter server's environment). Nothing was run. Install "
    "jupyter-openshell where the Jupyter server runs (`pip install jupyter-openshell`), then restart it."
)


def main() -> int:
    print(MESSAGE, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
