"""The uid on the other end of a loopback TCP connection to the proxy, from the kernel's socket tables
(`/proc/net/tcp`, `/proc/net/tcp6`) of the proxy's network namespace: the row whose local address is the
peer's and whose remote address is the proxy's listener names the uid that owns the peer's socket.

Only the proxy's own user (and root) is the host caller; a connection another local user opens is no
one's (see `ProxyState.caller`). It must never take a uid from anything the peer sends, and answers None
where the peer's socket is not in the table (another network namespace, a connection already gone).
"""

from __future__ import annotations

import ipaddress
import sys

_TABLES = {4: "/proc/net/tcp", 6: "/proc/net/tcp6"}


def _hex(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> tuple[int, str]:
    """(IP version, the table's spelling of ip:port): 32-bit words in host byte order."""
    raw = ip.packed
    if sys.byteorder == "little":
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return ip.version, f"{raw.hex().upper()}:{port:04X}"


def _forms(address: str, port: int) -> list[tuple[int, str]]:
    """Every table spelling of a socket address: an IPv4-mapped IPv6 address may be either."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    forms = [_hex(ip, port)]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        forms.append(_hex(ip.ipv4_mapped, port))
    return forms


def peer_uid(peer: tuple | None, local: tuple | None) -> int | None:
    """The uid owning the socket at `peer` connected to `local` (both (host, port, ...)), or None."""
    if not peer or not local:
        return None
    try:
        peers, locals_ = _forms(peer[0], int(peer[1])), _forms(local[0], int(local[1]))
    except (ValueError, IndexError, TypeError):
        return None
    for version, table in _TABLES.items():
        wanted = {(p, lo) for v, p in peers if v == version for w, lo in locals_ if w == version}
        if not wanted:
            continue
        try:
            with open(table, encoding="ascii") as rows:
                next(rows, None)
                for row in rows:
                    fields = row.split()
                    if len(fields) > 7 and (fields[1], fields[2]) in wanted:
                        return int(fields[7])
        except OSError:
            continue
    return None
