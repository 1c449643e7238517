"""Where downloads may connect: public addresses only, checked on the address actually connected to.

Stem URLs come from MusicGPT's replies, so they are hostile until checked (server-side request
forgery): a URL naming a loopback service, a router or the cloud metadata endpoint
(169.254.169.254) must not be fetched. Checking the URL's host before the request is not enough:
DNS can answer differently at connect time (rebinding), and a redirect names a new host. So the
check sits in the network backend the download pool connects through: it resolves the host
itself, refuses unless every address is public, and connects to the address it checked (TLS still
verifies the certificate against the host name). Hosts the user lists in
MUSICGPT_MCP_STORAGE_HOSTS are exempt (the sandbox lists its own loopback origin).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

import anyio
import httpcore2
import httpx2

from .addresses import AddressRefused, non_public


class GuardedBackend(httpcore2.AsyncNetworkBackend):
    """httpcore2's anyio backend, behind the public-address rule."""

    def __init__(self, exempt: Iterable[str] = ()) -> None:
        self._exempt = frozenset(exempt)
        self._inner = httpcore2.AnyIOBackend()

    def exempt(self, host: str, port: int) -> bool:
        host = host.lower().strip("[]")
        return host in self._exempt or f"{host}:{port}" in self._exempt

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore2's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        if self.exempt(host, port):
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        addresses = await _resolve(host, port, timeout)
        for address in addresses:
            kind = non_public(ipaddress.ip_address(address))
            if kind is not None:
                # Every address must be public: a name that also resolves inside the network is
                # refused outright rather than raced.
                raise AddressRefused(host, address, kind)
        error: Exception = httpcore2.ConnectError(f"{host} has no address")
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore2.ConnectError as exc:
                error = exc
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore2's interface
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise AddressRefused(path, path, "local socket")

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


async def _resolve(host: str, port: int, limit: float | None) -> list[str]:
    try:
        with anyio.fail_after(limit):
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise httpcore2.ConnectTimeout(f"resolving {host} timed out") from None
    except OSError as exc:
        raise httpcore2.ConnectError(f"cannot resolve {host}: {exc}") from None
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]  # drop an IPv6 zone index
        if address not in addresses:
            addresses.append(address)
    return addresses


class GuardedTransport(httpx2.AsyncHTTPTransport):
    """httpx2's transport with its connection pool built on GuardedBackend.

    httpx2 takes no network backend of its own, so the pool is replaced after construction; it is
    the same pool class with the same settings. No proxy: a proxy would connect for us, out of
    reach of the address check.
    """

    def __init__(self, exempt: Iterable[str], limits: httpx2.Limits) -> None:
        super().__init__(limits=limits)
        self.backend = GuardedBackend(exempt)
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=httpx2.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=self.backend,
        )
