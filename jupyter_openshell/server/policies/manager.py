"""Policies of the caller's sandboxes over REST: read, validate-and-apply (hot reload), history.

A thin layer over `jupyter_openshell.services.policies.PolicyService` (the same operations as `%policy`).
It must never write a policy that did not validate, nor change the policy of a kernel's sandbox whose kernel
may not change it (the kernelspec's `policy_edits`), unless `editable_kernel_sandboxes` names that sandbox:
code in the sandbox could otherwise widen its own egress through the user's browser session.
"""

from __future__ import annotations

import fnmatch

from traitlets import List, Unicode
from traitlets.config import LoggingConfigurable

from jupyter_openshell.services.errors import ServiceError
from jupyter_openshell.services.policies import PolicyService

from ..base import ApiError


class PolicyManager(LoggingConfigurable):
    editable_kernel_sandboxes = List(
        Unicode(),
        help="Sandboxes of kernels (glob patterns of sandbox names, e.g. 'analysis-*' for %%sandbox names) "
        "whose policy the REST API may change although their kernelspec does not set policy_edits.",
    ).tag(config=True)

    def check_editable(self, name: str) -> None:
        """403 for a kernel's sandbox whose policy edits are off (kernelspec and server setting)."""
        from jupyter_openshell.kernel.session import kernel_policy_edits

        if kernel_policy_edits(name) is not False:
            return
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.editable_kernel_sandboxes):
            return
        raise ApiError(
            403,
            f"sandbox {name!r} runs a kernel whose policy may not be changed from outside the host's own "
            "tools: code in the sandbox could use your browser session to widen its own egress. To allow "
            'it, set "policy_edits": true in the kernelspec\'s kernel_provisioner config (then the kernel '
            "itself may change it too), or set c.PolicyManager.editable_kernel_sandboxes = "
            f"[{name!r}] in the server's configuration; or change it with %policy from a host kernel.",
        )

    def get(self, name: str) -> dict:
        try:
            return PolicyService(name).show()
        except ServiceError as exc:
            raise ApiError(404, str(exc)) from None

    def put(self, name: str, text: str) -> dict:
        self.check_editable(name)
        try:
            result = PolicyService(name).put(text, source="policy")
        except ServiceError as exc:
            raise ApiError(400, str(exc), exc.issue_dicts) from None
        return {k: result[k] for k in ("name", "version", "warnings", "in_force", "diff")}

    def history(self, name: str) -> list[dict]:
        return PolicyService(name).history()
