"""Sandbox identity: which sandboxes are registered, and how their connections are recognised.

A runtime registers a sandbox through the control API with its name, its instance (`created`), its
policy file and its channel: how its connections reach the proxy. Two kinds exist:
* `unix`: the proxy listens on a UNIX socket that only that sandbox can see (bound into it), and every
  connection accepted there is that sandbox's, whoever the peer claims to be;
* `token` (sandboxes that reach the proxy over a network, e.g. Kubernetes pods): the sandbox holds a
  credential of its own; the registration carries only its SHA-256 and the one source address it is
  accepted from (`addons/identity.py` binds a connection that presents both).
Identity therefore never comes from a network address alone: a connection that did not arrive through
a registered channel, or present a registered credential from its registered source, is the host caller.
This module holds data only: it must never open sockets or read a runtime's files.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..names import HOST_CALLER, InvalidName, check_sandbox_name

__all__ = ["HOST_CALLER", "Registry", "RegistryError", "SandboxEntry", "check_name", "entry_from_dict"]

CHANNEL_KINDS = ("unix", "token")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class RegistryError(ValueError):
    """A sandbox cannot be registered; the message says which field and what to do."""


@dataclass(frozen=True)
class SandboxEntry:
    name: str
    policy_file: Path
    socket: Path | None  # channel "unix": where the proxy listens for this sandbox alone
    created: float | None = None  # tells two sandboxes of one name apart
    token_sha256: str | None = None  # channel "token": SHA-256 (hex) of the sandbox's credential
    source: str | None = None  # channel "token": the peer address the credential is accepted from

    @property
    def kind(self) -> str:
        return "unix" if self.socket is not None else "token"

    def channel(self) -> dict[str, Any]:
        if self.socket is not None:
            return {"kind": "unix", "socket": str(self.socket)}
        return {"kind": "token", "token_sha256": self.token_sha256, "source": self.source}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "created": self.created, "policy_file": str(self.policy_file),
                "channel": self.channel()}


def check_name(name: str) -> str:
    try:
        return check_sandbox_name(name)
    except InvalidName as exc:
        raise RegistryError(str(exc)) from None


def _absolute(value: Any, field: str) -> Path:
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise RegistryError(f"field {field!r} must be an absolute path, got {value!r}")
    return Path(value)


def _source(value: Any) -> str:
    """A peer address as the proxy sees it (an IPv4-mapped IPv6 address as its IPv4 form)."""
    try:
        ip = ipaddress.ip_address(value) if isinstance(value, str) else None
    except ValueError:
        ip = None
    if ip is None or ip.is_unspecified or ip.is_multicast:
        raise RegistryError(f"field 'channel.source' must be the sandbox's own IP address (e.g. its pod IP), "
                            f"got {value!r}")
    return str(normalize_source(str(ip)))


def normalize_source(address: str) -> str:
    """`address` without an IPv6 zone and with an IPv4-mapped IPv6 address written as IPv4."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def entry_from_dict(name: str, body: Any) -> SandboxEntry:
    """Validate a registration body: {"created", "policy_file", "channel": {"kind": "unix", "socket"}}
    or {..., "channel": {"kind": "token", "token_sha256": <64 hex>, "source": <IP>}}."""
    check_name(name)
    if not isinstance(body, dict):
        raise RegistryError("a registration is a JSON object with 'policy_file' and 'channel'")
    channel = body.get("channel")
    if not isinstance(channel, dict) or channel.get("kind") not in CHANNEL_KINDS:
        raise RegistryError(f"field 'channel' must be an object whose 'kind' is one of {CHANNEL_KINDS}, "
                            f"got {channel!r}")
    created = body.get("created")
    if created is not None and (isinstance(created, bool) or not isinstance(created, int | float)):
        raise RegistryError(f"field 'created' must be a number, got {created!r}")
    when = float(created) if created is not None else None
    policy_file = _absolute(body.get("policy_file"), "policy_file")
    if channel["kind"] == "unix":
        return SandboxEntry(name, policy_file, _absolute(channel.get("socket"), "channel.socket"), when)
    digest = channel.get("token_sha256")
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise RegistryError(f"field 'channel.token_sha256' must be 64 lower-case hex digits (the SHA-256 of "
                            f"the sandbox's credential), got {digest!r}")
    return SandboxEntry(name, policy_file, None, when, digest, _source(channel.get("source")))


class Registry:
    """Registered sandboxes by name."""

    def __init__(self) -> None:
        self._by_name: dict[str, SandboxEntry] = {}
        self._by_token: dict[str, SandboxEntry] = {}

    def add(self, entry: SandboxEntry) -> None:
        for other in self._by_name.values():
            if other.name == entry.name:
                continue
            if entry.socket is not None and other.socket == entry.socket:
                raise RegistryError(f"channel {entry.socket} of sandbox {entry.name!r} is already sandbox "
                                    f"{other.name!r}'s")
            if entry.token_sha256 is not None and other.token_sha256 == entry.token_sha256:
                raise RegistryError(f"the credential of sandbox {entry.name!r} is already sandbox "
                                    f"{other.name!r}'s: every sandbox needs a credential of its own")
        self.remove(entry.name)
        self._by_name[entry.name] = entry
        if entry.token_sha256 is not None:
            self._by_token[entry.token_sha256] = entry

    def remove(self, name: str) -> SandboxEntry | None:
        entry = self._by_name.pop(name, None)
        if entry is not None and entry.token_sha256 is not None:
            self._by_token.pop(entry.token_sha256, None)
        return entry

    def by_token(self, token_sha256: str) -> SandboxEntry | None:
        """The registered sandbox whose credential has this SHA-256 (channel "token"), if any."""
        return self._by_token.get(token_sha256)

    def get(self, name: str) -> SandboxEntry | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def entries(self) -> list[SandboxEntry]:
        return [self._by_name[n] for n in self.names()]

    def current(self, entry: SandboxEntry) -> bool:
        """True while `entry` (bound to a connection when it arrived) is still the registered sandbox."""
        return self._by_name.get(entry.name) == entry
