"""The policy proxy of this state directory, for the layers above: is it running, start it (idempotent),
stop it, ask it to reload, and which policy version it enforces for each sandbox.

It must never start a proxy with anything but the state directory's own default policy.
"""

from __future__ import annotations

from typing import Any


def _client() -> Any:
    from ..proxy import ProxyClient

    return ProxyClient()


def is_running() -> bool:
    return bool(_client().is_running())


def ensure_running() -> dict:
    """Start the proxy if it is not up (a kept one: it does not stop with the last sandbox); its status."""
    return _client().ensure_running()


def stop() -> None:
    _client().stop()


def reload() -> dict | None:
    """Make the proxy load changed policy files now; its policies' status, or None when it is not running."""
    from ..proxy import ProxyError

    try:
        return _client().reload().get("policies") or {}
    except ProxyError:
        return None


def registrations() -> dict[str, dict]:
    """{sandbox: {created, policy_version, policy_error, ...}} as the running proxy has them ({} when none
    runs): the policy version in force for each registered sandbox instance."""
    from ..proxy import ProxyError

    try:
        return _client().status().get("sandboxes") or {}
    except ProxyError:
        return {}
