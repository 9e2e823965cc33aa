"""Sandbox identity: which sandbox a TCP peer address belongs to.

The runtime allocates each sandbox an address `127.77.X.Y` and writes it to
`<state>/sandboxes/<name>/sandbox.json`; registering a sandbox reads that file. Only the gateway binds
those addresses, so the peer address of a proxy connection names its sandbox. A peer inside
127.77.0.0/16 that is not registered belongs to no one and is denied (fail closed); any other peer is
the host caller. This module holds data only: it must never open sockets.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path

SANDBOX_NET = ipaddress.ip_network("127.77.0.0/16")
HOST_CALLER = "default"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class RegistryError(ValueError):
    """A sandbox cannot be registered; the message says which file or field and what to do."""


@dataclass(frozen=True)
class SandboxEntry:
    name: str
    address: str
    policy_file: Path
    chan_dir: Path
    created: float | None = None  # sandbox.json "created": tells two sandboxes of one name apart


def check_name(name: str) -> str:
    if not _NAME.match(name) or name == HOST_CALLER:
        raise RegistryError(
            f"invalid sandbox name {name!r}: use lower-case letters, digits, '.', '_' and '-' "
            f"(at most 63, not {HOST_CALLER!r})"
        )
    return name


def read_sandbox(state: Path, name: str) -> SandboxEntry:
    """Read `<state>/sandboxes/<name>/sandbox.json` into an entry (validating the address)."""
    check_name(name)
    meta_path = state / "sandboxes" / name / "sandbox.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise RegistryError(f"{meta_path}: not found; create the sandbox before registering it") from None
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{meta_path}: unreadable: {exc}") from None
    address = meta.get("address")
    try:
        ip = ipaddress.ip_address(str(address))
    except ValueError:
        raise RegistryError(f"{meta_path}: field 'address' must be an IPv4 address in {SANDBOX_NET}, "
                            f"got {address!r}") from None
    if ip not in SANDBOX_NET or ip in (SANDBOX_NET.network_address, SANDBOX_NET.broadcast_address):
        raise RegistryError(f"{meta_path}: field 'address' {address!r} is outside {SANDBOX_NET}")
    policy_file = Path(meta.get("policy_file") or state / "policies" / f"{name}.yaml")
    created = meta.get("created")
    return SandboxEntry(name, str(ip), policy_file, state / "sandboxes" / name / "chan",
                        float(created) if isinstance(created, int | float) else None)


class Registry:
    """Registered sandboxes by name and by address."""

    def __init__(self) -> None:
        self._by_name: dict[str, SandboxEntry] = {}
        self._by_address: dict[str, SandboxEntry] = {}

    def add(self, entry: SandboxEntry) -> None:
        other = self._by_address.get(entry.address)
        if other is not None and other.name != entry.name:
            raise RegistryError(f"address {entry.address} of sandbox {entry.name!r} is already used by "
                                f"sandbox {other.name!r}")
        self.remove(entry.name)
        self._by_name[entry.name] = entry
        self._by_address[entry.address] = entry

    def remove(self, name: str) -> SandboxEntry | None:
        entry = self._by_name.pop(name, None)
        if entry is not None:
            self._by_address.pop(entry.address, None)
        return entry

    def get(self, name: str) -> SandboxEntry | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def caller(self, peer_ip: str) -> str | None:
        """The policy name for a peer: a sandbox name, HOST_CALLER, or None (unknown sandbox address)."""
        entry = self._by_address.get(peer_ip)
        if entry is not None:
            return entry.name
        try:
            ip = ipaddress.ip_address(peer_ip)
        except ValueError:
            return None
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
            entry = self._by_address.get(str(ip))
            if entry is not None:
                return entry.name
        return None if ip in SANDBOX_NET else HOST_CALLER
