"""Sandbox identity: which sandboxes are registered, and how their connections are recognised.

A runtime registers a sandbox through the control API with its name, its instance (`created`), its
policy file and its channel: how its connections reach the proxy. Today one kind exists, `unix`: the
proxy listens on a UNIX socket that only that sandbox can see (bound into it), and every connection
accepted there is that sandbox's, whoever the peer claims to be. Identity therefore never comes from a
network address: a connection that did not arrive through a registered channel is the host caller.
This module holds data only: it must never open sockets or read a runtime's files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST_CALLER = "default"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
CHANNEL_KINDS = ("unix",)


class RegistryError(ValueError):
    """A sandbox cannot be registered; the message says which field and what to do."""


@dataclass(frozen=True)
class SandboxEntry:
    name: str
    policy_file: Path
    socket: Path  # channel "unix": where the proxy listens for this sandbox alone
    created: float | None = None  # tells two sandboxes of one name apart

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "created": self.created, "policy_file": str(self.policy_file),
                "channel": {"kind": "unix", "socket": str(self.socket)}}


def check_name(name: str) -> str:
    if not _NAME.match(name) or name == HOST_CALLER:
        raise RegistryError(
            f"invalid sandbox name {name!r}: use lower-case letters, digits, '.', '_' and '-' "
            f"(at most 63, not {HOST_CALLER!r})"
        )
    return name


def _absolute(value: Any, field: str) -> Path:
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise RegistryError(f"field {field!r} must be an absolute path, got {value!r}")
    return Path(value)


def entry_from_dict(name: str, body: Any) -> SandboxEntry:
    """Validate a registration body: {"created", "policy_file", "channel": {"kind": "unix", "socket"}}."""
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
    return SandboxEntry(name, _absolute(body.get("policy_file"), "policy_file"),
                        _absolute(channel.get("socket"), "channel.socket"),
                        float(created) if created is not None else None)


class Registry:
    """Registered sandboxes by name."""

    def __init__(self) -> None:
        self._by_name: dict[str, SandboxEntry] = {}

    def add(self, entry: SandboxEntry) -> None:
        for other in self._by_name.values():
            if other.socket == entry.socket and other.name != entry.name:
                raise RegistryError(f"channel {entry.socket} of sandbox {entry.name!r} is already sandbox "
                                    f"{other.name!r}'s")
        self._by_name[entry.name] = entry

    def remove(self, name: str) -> SandboxEntry | None:
        return self._by_name.pop(name, None)

    def get(self, name: str) -> SandboxEntry | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def entries(self) -> list[SandboxEntry]:
        return [self._by_name[n] for n in self.names()]

    def current(self, entry: SandboxEntry) -> bool:
        """True while `entry` (bound to a connection when it arrived) is still the registered sandbox."""
        return self._by_name.get(entry.name) == entry
