"""Fetching `url` inputs for the service, with an allow-list, size and time caps.

Every hop (redirects are followed by hand, at most `max_redirects`) is checked: scheme http/https; the host's
resolved addresses must all be public, unless "host:port" or "host" is listed in `[url_fetch] allow`; a
listed "*" admits public hosts. The connection then goes to the address that was checked (Host header and
TLS server name stay the URL's host), so a DNS answer that changes between check and connect (DNS
rebinding) cannot reach a private address. The body is streamed and cut at the endpoint's size cap.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
import zlib
from urllib.parse import urljoin, urlsplit

import httpx

from imgrec.schemas.common import check_url_syntax
from imgrec.schemas.errors import ApiError


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_global and not ip.is_multicast


class UrlFetcher:
    def __init__(self, allow: list[str], timeout: float = 15.0, max_redirects: int = 3):
        self.allow = {a.lower() for a in allow}
        self.allow_public = "*" in self.allow
        self.timeout = timeout
        self.max_redirects = max_redirects

    def _listed(self, host: str, port: int) -> bool:
        return f"{host}:{port}" in self.allow or host in self.allow

    async def _check_host(self, url: str) -> str | None:
        """The address to connect to (None: a listed host, resolved as usual), or ApiError."""
        check_url_syntax(url)
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if self._listed(host, port):
            return None
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror:
            raise ApiError.of("AIS.0029", "host does not resolve") from None
        addresses = list(dict.fromkeys(info[4][0] for info in infos))  # the resolver's order of preference
        if not addresses or not all(_is_public(a) for a in addresses):
            raise ApiError.of("AIS.0022", "private, loopback or reserved address not on the allow-list")
        if not self.allow_public:
            raise ApiError.of("AIS.0022", "host is not on the allow-list")
        return addresses[0]

    async def fetch(self, url: str, max_bytes: int) -> bytes:
        deadline = time.monotonic() + self.timeout
        async with httpx.AsyncClient(follow_redirects=False, timeout=self.timeout, trust_env=False) as client:
            for _ in range(self.max_redirects + 1):
                address = await self._check_host(url)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ApiError.of("AIS.0029", "download timed out")
                try:
                    return await asyncio.wait_for(self._get(client, url, max_bytes, address), remaining)
                except _Redirect as hop:
                    url = urljoin(url, hop.location)
                except asyncio.TimeoutError:
                    raise ApiError.of("AIS.0029", "download timed out") from None
                except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError, UnicodeError):
                    # a URL (or a redirect's Location) that httpx cannot even parse: the reference's bad URL
                    raise ApiError.of("AIS.0022", "malformed URL") from None
                except httpx.HTTPError as exc:
                    raise ApiError.of("AIS.0029", type(exc).__name__) from None
        raise ApiError.of("AIS.0029", "too many redirects")

    async def _get(self, client: httpx.AsyncClient, url: str, max_bytes: int, address: str | None) -> bytes:
        # Bodies are read raw and decoded here, one layer at most, counted as they inflate: httpx would decode
        # every listed encoding without a limit (a 2 KB `gzip, gzip` body can hold 1 GB of zeros).
        target, headers, extensions = httpx.URL(url), {"Accept-Encoding": "identity"}, {}
        if address is not None:  # connect to the checked address; the server still sees its own name
            headers["Host"] = target.netloc.decode("ascii")
            extensions["sni_hostname"] = target.host
            target = target.copy_with(host=address)
        async with client.stream("GET", target, headers=headers, extensions=extensions) as resp:
            if resp.status_code in (301, 302, 303, 307, 308) and "location" in resp.headers:
                raise _Redirect(resp.headers["location"])
            if resp.status_code in (401, 403):
                # OBS temporary-authorization URLs answer 403 once expired or tampered with.
                raise ApiError.of("AIS.0024", f"HTTP {resp.status_code}")
            if resp.status_code != 200:
                raise ApiError.of("AIS.0029", f"HTTP {resp.status_code}")
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise ApiError.of("AIS.0023", "declared size over the limit")
            encodings = [e.strip().lower() for e in resp.headers.get("content-encoding", "").split(",") if e.strip()]
            encodings = [e for e in encodings if e != "identity"]
            if len(encodings) > 1 or (encodings and encodings[0] not in _WBITS):
                raise ApiError.of("AIS.0029", f"unsupported content encoding {', '.join(encodings)}")
            chunks = resp.aiter_raw()
            if encodings:
                chunks = _inflated(chunks, _WBITS[encodings[0]], max_bytes)
            data = await read_capped(chunks, max_bytes, "AIS.0023")
        if not data:
            raise ApiError.of("AIS.0025")
        return data


_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


async def _inflated(chunks, wbits: int, limit: int):
    """Decompress a streamed body, never holding more than `limit` + 1 decoded bytes: the caller's cap
    then refuses it (AIS.0023) as soon as the decoded size passes the limit."""
    inflater = zlib.decompressobj(wbits)
    produced = 0
    try:
        async for chunk in chunks:
            data = chunk
            while data:
                out = inflater.decompress(data, limit + 1 - produced)
                produced += len(out)
                yield out
                if produced > limit:
                    return
                data = inflater.unconsumed_tail
        yield inflater.flush()
    except zlib.error:
        raise ApiError.of("AIS.0029", "corrupt compressed body") from None


async def capped(chunks, limit: int, code: str):
    """Pass a streamed body through, refusing with `code` as soon as it passes `limit` (never after)."""
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise ApiError.of(code, "body over the limit while streaming")
        yield chunk


async def read_capped(chunks, limit: int, code: str) -> bytes:
    """Collect a streamed body, refusing with `code` as soon as it passes `limit`."""
    return b"".join([chunk async for chunk in capped(chunks, limit, code)])


class _Redirect(Exception):
    def __init__(self, location: str):
        self.location = location
