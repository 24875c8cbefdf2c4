"""Where a webhook may go: public addresses only, checked when a URL is set and again
on the address each attempt really connects to (so a name that later resolves to an
internal address — DNS rebinding — reaches nothing).

``CODEPOOL_WEBHOOK_ALLOW_PRIVATE=1`` turns both checks off, for receivers on a private
network (and the test suite's receivers on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from codepool import errors

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_public(address: IPAddress) -> bool:
    """Globally routable unicast: not loopback, private, link-local, CGNAT, reserved,
    multicast or unspecified (an IPv4-mapped IPv6 address is judged as its IPv4)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


async def _resolve(host: str, port: int) -> list[IPAddress]:
    # getaddrinfo also reads the odd spellings a URL may use for an address
    # (2130706433, 0x7f.1, 127.1), exactly as the connection would.
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def _refuse(url: str, reason: str) -> errors.CodepoolError:
    return errors.WebhookUrlNotAllowed(url=url, reason=reason)


async def check_url(url: str) -> None:
    """Refuse (422 webhook_url_not_allowed) a URL whose host is, or resolves to, an
    address that is not public. Called when a project or pool webhook is set."""
    parsed = httpx.URL(url)
    if not parsed.host:
        raise _refuse(url, "the URL names no host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        addresses = await _resolve(parsed.host, port)
    except (OSError, UnicodeError):
        raise _refuse(url, "the host name does not resolve") from None
    if not addresses or not all(is_public(a) for a in addresses):
        raise _refuse(url, "the host is not a public address")


async def check_urls(urls: Iterable[str | None], allow_private: bool) -> None:
    if allow_private:
        return
    for url in urls:
        if url:
            await check_url(url)


class PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to public addresses: it resolves the
    host itself, checks every address, and connects to the checked one (TLS still
    verifies and sends the URL's host name: httpcore takes those from the request)."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await _resolve(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"{host} does not resolve") from exc
        if not addresses or not all(is_public(a) for a in addresses):
            raise httpcore.ConnectError("the destination is not a public address")
        return await self._inner.connect_tcp(
            str(addresses[0]), port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks do not go to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def public_only_transport(verify: ssl.SSLContext | bool = True) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose every connection goes through PublicOnlyBackend.

    httpx has no argument for a network backend; its connection pool has one. Setting it
    on the pool is covered by tests/unit/test_destinations.py, which fails if an httpx
    release moves it.
    """
    transport = httpx.AsyncHTTPTransport(verify=verify)
    pool = transport._pool
    pool._network_backend = PublicOnlyBackend(pool._network_backend)
    return transport
