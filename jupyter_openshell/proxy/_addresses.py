"""Post-allow address checks: resolve an allowed name and refuse addresses a sandbox must not reach.

Refused unless the rule that allowed the request names them (`Decision.admits`: the rule's IP or CIDR
host, or its `addresses`; the rule matched the request's port) or the inference route that took it
does (`CompiledPolicy.route_admits`: its backend URL's IP, or its backend `addresses`): loopback,
link-local (169.254.169.254 included), unspecified, multicast and reserved addresses, and every
address of the proxy's own host. An exception belongs to its rule: naming 127.0.0.1 in one rule
never lets another rule's names reach it.
`Resolver.resolve` is the only place the proxy resolves names; it logs each lookup (name only) so
tests can prove that denied names are never looked up. Pins (`--resolve NAME=IP`) replace DNS for a
name and are checked like any other answer; `--resolve NAME=` makes the name not resolve.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressRefused(Exception):
    """Every address of an allowed destination is forbidden; the message says which and why."""


class ResolveFailed(Exception):
    """The name of an allowed destination did not resolve: an upstream failure, not a refusal."""


def _as_ip(text: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def own_addresses() -> frozenset[IPAddress]:
    """Every address configured on this host's interfaces."""
    out: set[IPAddress] = set()
    try:
        import psutil

        for addrs in psutil.net_if_addrs().values():
            for a in addrs:
                if a.family in (socket.AF_INET, socket.AF_INET6) and (ip := _as_ip(a.address)):
                    out.add(ip)
    except Exception:  # psutil missing or failing: the ranges below still cover loopback
        log.warning("cannot list this host's addresses; only loopback/link-local ranges are refused")
    return frozenset(out)


Admits = Callable[[IPAddress], bool]


def forbidden_reason(ip: IPAddress, own: frozenset[IPAddress]) -> str | None:
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local (cloud metadata)" if str(ip) == "169.254.169.254" else "link-local"
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return "unspecified/multicast/reserved"
    if ip in own:
        return "an address of the proxy's own host"
    return None


class Resolver:
    def __init__(self, pins: dict[str, str] | None = None):
        self.pins = {k.lower().rstrip("."): v for k, v in (pins or {}).items()}
        self.own = own_addresses()
        self.lookups = 0

    async def _lookup(self, host: str, port: int) -> list[str]:
        self.lookups += 1
        log.info("resolve %s", host)
        if host in self.pins:
            if not self.pins[host]:  # pinned to nothing: the name does not resolve
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (pinned to no address)")
            return [self.pins[host]]
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return [info[4][0] for info in infos]

    async def checked_address(self, host: str, port: int, admits: Admits) -> tuple[str, bool]:
        """(address of `host` to dial, whether it is one only `admits` let through); raises
        `AddressRefused`, or `ResolveFailed` when the name does not resolve. A forbidden address passes
        only where `admits(ip)` (the deciding rule's exception, which matched this port) holds."""
        literal = _as_ip(host)
        try:
            candidates = [str(literal)] if literal else await self._lookup(host, port)
        except OSError as exc:
            raise ResolveFailed(f"cannot resolve {host}: {exc}") from None
        refused: list[str] = []
        for text in candidates:
            ip = _as_ip(text)
            if ip is None:
                continue
            reason = forbidden_reason(ip, self.own)
            if reason is None:
                return str(ip), False
            if admits(ip):
                return str(ip), True
            refused.append(f"{ip} ({reason})")
        raise AddressRefused(
            f"{host} resolves only to forbidden addresses: {', '.join(refused) or 'none'} (port {port}); "
            "if intended, name the address in the allowing rule (`addresses: [IP]`, or an IP `host`)"
        )
