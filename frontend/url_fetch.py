"""Fetching ``image`` URLs without becoming a proxy into private networks.

Only when ``Serving.url_inputs.enabled``. For every hop (the URL and each
redirect, followed by hand): the scheme must be http(s), the host must be on
the allow-list (if one is set), and every address the host resolves to must
be public; loopback, private, link-local and reserved addresses are refused
unless ``allow_private_networks`` is set, and cloud metadata endpoints are
refused always. The connection is then pinned to the addresses that were
checked, so a second DNS answer cannot swap in another (DNS rebinding).
Size and time are bounded; no proxy settings from the environment apply.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from pxserve.shared.config import MiB, UrlInputSettings
from pxserve.shared.errors import RequestError, invalid

REDIRECTS = {301, 302, 303, 307, 308}
METADATA = {
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
}
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def refusal(address: IPAddress, allow_private: bool) -> str | None:
    """Why this address may not be fetched from, or None if it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA:
        return "a cloud metadata address"
    if address.is_global:
        return None
    if allow_private and (address.is_private or address.is_loopback or address.is_link_local):
        return None
    return "a loopback, private, link-local or reserved address"


def host_allowed(host: str, allow_hosts: list[str]) -> bool:
    host = host.lower().rstrip(".")
    for entry in (h.lower().rstrip(".") for h in allow_hosts):
        if host == entry or (entry.startswith(".") and host.endswith(entry)):
            return True
    return not allow_hosts


class _PinnedResolver(AbstractResolver):
    """Answers aiohttp with the addresses we already checked, and no others."""

    def __init__(self, infos: list[tuple[Any, ...]]) -> None:
        self.infos = infos

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict[str, Any]]:
        return [
            {"hostname": host, "host": sockaddr[0], "port": port, "family": fam, "proto": proto,
             "flags": socket.AI_NUMERICHOST}
            for fam, _, proto, _, sockaddr in self.infos
        ]  # fmt: skip

    async def close(self) -> None:
        return None


class UrlFetcher:
    def __init__(self, settings: UrlInputSettings) -> None:
        self.settings = settings
        self.max_bytes = int(settings.max_mb * MiB)

    async def __call__(self, url: str, field: str = "image") -> bytes:
        """The URL's content; refusals and failures are errors naming ``field``, the request's."""
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                return await self._follow(url, field)
        except TimeoutError:
            raise invalid(field, f"fetching the URL took longer than {self.settings.timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            raise invalid(field, f"the URL could not be fetched ({type(exc).__name__})") from None

    async def _follow(self, url: str, field: str) -> bytes:
        target = URL(url)
        for _ in range(self.settings.max_redirects + 1):
            infos = await self._check(target, field)
            connector = aiohttp.TCPConnector(
                resolver=_PinnedResolver(infos), use_dns_cache=False, force_close=True
            )
            async with (
                aiohttp.ClientSession(connector=connector, trust_env=False) as session,
                session.get(target, allow_redirects=False, headers={"Accept": "image/*"}) as response,
            ):
                if response.status in REDIRECTS:
                    location = response.headers.get("Location")
                    if not location:
                        raise invalid(field, "the URL redirected without a Location")
                    target = target.join(URL(location))
                    continue
                if response.status != 200:
                    raise invalid(field, f"the URL answered HTTP {response.status}")
                return await self._read(response, field)
        raise invalid(field, f"the URL redirected more than {self.settings.max_redirects} times")

    async def _check(self, target: URL, field: str) -> list[tuple[Any, ...]]:
        if target.scheme not in ("http", "https") or not target.raw_host:
            raise invalid(field, "only http and https URLs are fetched")
        host = target.raw_host
        if not host_allowed(host, self.settings.allow_hosts):
            raise invalid(field, f"host {host} is not on this server's allow-list")
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, target.port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise invalid(field, f"cannot resolve host {host}") from None
        for *_, sockaddr in infos:
            reason = refusal(
                ipaddress.ip_address(str(sockaddr[0]).split("%")[0]), self.settings.allow_private_networks
            )
            if reason is not None:
                raise invalid(field, f"host {host} resolves to {reason}; refused")
        return infos

    async def _read(self, response: aiohttp.ClientResponse, field: str) -> bytes:
        too_big = RequestError(
            413, f"{field}: the URL's content is over the limit of {self.settings.max_mb:g} MiB"
        )
        if response.content_length is not None and response.content_length > self.max_bytes:
            raise too_big
        data = bytearray()
        async for chunk in response.content.iter_chunked(1 << 16):
            data += chunk
            if len(data) > self.max_bytes:
                raise too_big
        return bytes(data)
