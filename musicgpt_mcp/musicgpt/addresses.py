"""Which addresses downloads may reach: public unicast addresses, unless the user exempted the host.

Kept apart from the transport (netguard) so that reading the configuration at start-up does not
import the HTTP stack.
"""

from __future__ import annotations

import ipaddress
from typing import Final

STORAGE_HOSTS_VARIABLE: Final = "MUSICGPT_MCP_STORAGE_HOSTS"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Ranges `ipaddress` flags with no single property: shared address space (carrier-grade NAT) and
# the IPv6 prefixes that embed an IPv4 address a gateway would reach for us.
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class AddressRefused(Exception):
    """A download would connect to a non-public address. Not an OSError on purpose: httpcore2
    would map that to ConnectError, which downloads retry; a refusal is final."""

    def __init__(self, host: str, address: str, kind: str) -> None:
        shown = host if host == address else f"{host} ({address})"
        super().__init__(
            f"refused: {shown} is a {kind} address, and downloads go only to public addresses (a stem URL "
            f"pointing inside your network is not fetched). If this storage host is yours, list it in "
            f"{STORAGE_HOSTS_VARIABLE}"
        )


def non_public(ip: IPAddress) -> str | None:
    """What kind of non-public address `ip` is, or None when it is a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return non_public(embedded)
        if ip.is_site_local:
            return "site-local"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local (cloud metadata)" if str(ip) == "169.254.169.254" else "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "shared (carrier-grade NAT)"
    if ip.is_private:
        return "private"
    if ip.is_reserved or not ip.is_global:
        return "reserved"
    return None


def parse_storage_hosts(raw: str | None) -> tuple[str, ...]:
    """MUSICGPT_MCP_STORAGE_HOSTS: `host` or `host:port` entries (`[v6]:port` for IPv6), separated by
    spaces; normalised to lower case. ValueError names an entry that is not one."""
    entries = []
    for item in (raw or "").split():
        host, port = _split_host_port(item)
        if not host or "/" in host or "@" in host or (port is not None and not 0 < port < 65536):
            raise ValueError(
                f"{STORAGE_HOSTS_VARIABLE} must list host or host:port entries separated by spaces (e.g. "
                f"storage.example.com 127.0.0.1:8080); {item[:100]!r} is not one."
            )
        entries.append(f"{host}:{port}" if port is not None else host)
    return tuple(entries)


def _split_host_port(item: str) -> tuple[str, int | None]:
    item = item.strip().lower()
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif item.count(":") == 1:
        host, port = item.split(":")
    else:
        host, port = item, None
    if port is None:
        return host, None
    return host, int(port) if port.isdigit() else -1
