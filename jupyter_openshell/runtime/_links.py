"""The runtime's only contact points with the policy and proxy areas (their public APIs, nothing else).

* `policy_of(spec)`, `store(name, text)`: validate a policy and make it sandbox `name`'s current policy
  (`<state>/policies/<name>.yaml`, which the proxy watches: a new version applies to the next request).
* `publish(name, policy, created)`: both (store the validated policy's text, then register), meant for
  `in_background(func, *args)` while the sandbox boots (`in_background` returns a join that hands back
  the outcome or raises its error).
* `register(name, created)` / `unregister(name)`: ask the proxy to open/close the sandbox's channel. A
  proxy that `register` (or `ensure_proxy`) had to start stops when `unregister` leaves it no sandbox
  (`ProxyClient.release_if_unused`; OPENSHELL_KEEP_PROXY=1 or `openshell proxy start` keep it).
It must never read the proxy's private files (CA key, secrets) and never swallow a policy error.
"""

from __future__ import annotations

import _thread
import logging
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from .. import paths
from ._resources import Limits
from ._types import SandboxError

log = logging.getLogger("jupyter_openshell.runtime")

DENY_ALL = """\
# No --policy was given: nothing may leave this sandbox (deny by default).
# Replace it with `openshell sandbox policy NAME --set FILE`.
network:
  egress:
    - action: deny
"""


def policy_path(name: str) -> Path:
    return paths.layout().policy(name)


def policy_of(spec: Any) -> tuple[str, Any]:
    """(text, validated Policy) of a `SandboxSpec`: its policy text, else DENY_ALL. SandboxError with the
    file/line report (named by `spec.source()`) if it is invalid."""
    if spec.policy is None:
        return DENY_ALL, default_policy()
    from ..policy import PolicyError, parse_policy

    try:
        return spec.policy, parse_policy(spec.policy, source=spec.source())
    except PolicyError as exc:
        raise SandboxError(f"{exc}\nFix the policy and retry.") from exc


@cache
def default_policy() -> Any:
    """The DENY_ALL policy, built directly (what parsing DENY_ALL gives, a test checks): a sandbox
    created without a policy does not pay for the YAML parsers."""
    from ..policy import EgressRule, Policy, with_version

    deny = EgressRule(index=0, action="deny", ports=None, line=5, source_index=0)
    return with_version(Policy(egress=(deny,), source="<default sandbox policy>", text=DENY_ALL))


def store(name: str, text: str, validated: Any = None) -> Any:
    """Validate `text` (unless `validated` is the Policy made of it) and make it the current policy of
    sandbox `name`; returns the Policy."""
    from ..policy import PolicyError, PolicyStore

    try:
        return PolicyStore(paths.state_dir()).put(name, text, validated)
    except PolicyError as exc:
        raise SandboxError(f"policy for sandbox {name} is invalid, nothing changed:\n{exc}") from exc


def limits(policy: Any) -> Limits:
    res = policy.resources
    return Limits(cpu=res.cpu, memory=res.memory, pids=res.pids, disk=res.disk, timeout=res.timeout)


def _client() -> Any:
    from ..proxy import ProxyClient

    return ProxyClient(paths.state_dir())


def ensure_proxy() -> str | None:
    """Start the proxy if it is not running (it creates the CA the sandboxes trust); a warning on failure."""
    try:
        client = _client()
        with client.in_use():
            client.ensure_running(auto=True)
    except Exception as exc:  # the proxy is another area: report, the sandbox then has no network
        return f"policy proxy unavailable ({type(exc).__name__}: {exc})"
    return None


def register(name: str, created: float) -> str | None:
    """Make sure the proxy runs and serves sandbox `name` (the instance `created`) on its channel,
    `<state>/sandboxes/<name>/chan/proxy.sock`; returns a warning instead of failing (the sandbox then has
    no way out at all, and says so to each request)."""
    try:
        client = _client()
        with client.in_use():  # (no release_if_unused in between)
            client.ensure_running(auto=True)
            socket = paths.layout().proxy_socket(name)
            client.register_sandbox(name, created=created, policy_file=policy_path(name), socket_path=socket)
    except Exception as exc:  # the proxy is another area: any failure there must not leave a half sandbox
        message = f"policy proxy unavailable ({type(exc).__name__}: {exc}); sandbox {name} has no network"
        log.warning(message)
        return message
    return None


def unregister(name: str, created: float | None = None) -> None:
    """Ask the proxy to forget sandbox `name` (only the one `created` then, when given), then stop the
    proxy if it was started for sandboxes and none is left. Best effort: a proxy that is not running has
    nothing to forget; any other failure is logged."""
    client = _client()
    if not client.control_path.exists():  # no proxy: nothing to forget
        return
    try:
        client.unregister_sandbox(name, created=created)
    except Exception as exc:  # the proxy re-reads sandbox.json on the next register: never fatal here
        log.warning("sandbox %s: the proxy did not confirm its removal: %s", name, exc)
    try:
        client.release_if_unused()
    except Exception as exc:
        log.warning("could not stop the policy proxy started for sandboxes: %s", exc)


def ca_bundle() -> bytes:
    """The CA bundle sandboxes trust (system roots + the proxy's CA certificate, never its key)."""
    try:
        return paths.layout().ca_bundle.read_bytes()
    except OSError:
        return b""


def publish(name: str, policy: Any, created: float) -> str | None:
    """Make `policy` (as `policy_of` validated it) sandbox `name`'s current policy and open its gateway;
    a warning if the proxy failed."""
    store(name, policy.text, policy)
    return register(name, created)


def in_background(func: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    """Run func(*args) in a thread; the returned function waits for it and returns (or raises) its outcome."""
    outcome: dict[str, Any] = {}
    done = _thread.allocate_lock()
    done.acquire()

    def run() -> None:
        try:
            outcome["value"] = func(*args)
        except BaseException as exc:  # handed to the caller by join()
            outcome["error"] = exc
        finally:
            done.release()

    _thread.start_new_thread(run, ())  # (threading.Thread.start waits for the thread to be scheduled)

    def join() -> Any:
        with done:
            pass
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("value")

    return join
