"""Which policy service the magics and widgets talk to: on the host, `services.policies.PolicyService` (the
state directory); inside an OpenShell kernel, `RemoteOps`, the same operations through the kernel's broker
(host side, its own sandbox only). `ops_for()` picks the right one.

It must never let code inside a kernel name another sandbox than its own.
"""

from __future__ import annotations

import os
from typing import Any

from jupyter_openshell.services.errors import ServiceError

BROKER_ENV = "OPENSHELL_KERNEL_BROKER"


class RemoteOps:
    """The operations of `PolicyService`, inside an OpenShell kernel, through the host-side broker of its
    sandbox."""

    def __init__(self, path: str, name: str):
        self.path, self.name = path, name

    def __getattr__(self, op: str) -> Any:
        from jupyter_openshell.kernel.broker import BrokerError, call

        def remote(*args: Any, **kwargs: Any) -> Any:
            params = dict(zip(_PARAMS.get(op, ()), args, strict=False), **kwargs)
            try:
                return call(self.path, op, **params)
            except BrokerError as exc:
                raise ServiceError(str(exc), exc.issue_dicts) from None

        return remote


_PARAMS = {
    "put": ("text", "source"),
    "allow": ("method", "url"),
    "allow_preset": ("name",),
    "deny": ("method", "url"),
    "rule_for": ("method", "url"),
    "explain": ("method", "url"),
    "mode": ("mode",),
    "rollback": ("version",),
    "flows": ("since", "limit"),
    "flow_page": ("after", "limit"),
}


def inside_sandbox() -> bool:
    return bool(os.environ.get(BROKER_ENV))


def ops_for(name: str | None = None) -> Any:
    """Inside an OpenShell kernel: its own sandbox (any other name is refused); else the named sandbox
    ("default": the host caller's policy). A `PolicyService` or a `RemoteOps`."""
    if inside_sandbox():
        own = os.environ.get("OPENSHELL_SANDBOX", "")
        if name and name != own:
            raise ServiceError(
                f"this kernel runs in sandbox {own!r}; it can only see its own policy, not {name!r}"
            )
        return RemoteOps(os.environ[BROKER_ENV], own)
    from jupyter_openshell.services.policies import PolicyService

    return PolicyService(name or "default")
