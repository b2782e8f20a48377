"""Fetching user-supplied URLs (texture_image_url, image_url, model_url) without becoming an SSRF proxy.

http(s) only; every address the name resolves to must be public; the connection goes to the checked address (no
DNS rebinding between check and connect); redirects are re-checked; size and time are capped; content is sniffed.
`data:` URIs are decoded with the same size cap and sniffing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote_to_bytes, urljoin, urlsplit

import httpx

MAX_REDIRECTS = 3
MAX_URL_LENGTH = 4096
_SIGNATURES = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "model/gltf-binary": (b"glTF",),
}


class FetchRefused(Exception):
    """The URL or its content is not acceptable; the message is safe to show the caller."""


@dataclass(frozen=True)
class Fetched:
    content: bytes
    media_type: str


def sniff(content: bytes, allowed: tuple[str, ...] | None) -> str:
    """The media type the bytes really are, among `allowed`; FetchRefused otherwise. `None` checks nothing (the
    caller sniffs itself, as model files do)."""
    if allowed is None:
        return "application/octet-stream"
    for media_type in allowed:
        if any(content.startswith(magic) for magic in _SIGNATURES.get(media_type, ())):
            return media_type
    raise FetchRefused(f"content is not one of: {', '.join(allowed)}")


def decode_data_uri(uri: str, *, max_bytes: int) -> bytes:
    header, sep, payload = uri.partition(",")
    if not sep or not header.startswith("data:"):
        raise FetchRefused("malformed data URI")
    if len(payload) > max_bytes * 4 // 3 + 4:
        raise FetchRefused(f"data URI larger than {max_bytes} bytes")
    try:
        content = base64.b64decode(payload, validate=True) if header.endswith(";base64") else unquote_to_bytes(payload)
    except (binascii.Error, ValueError) as exc:
        raise FetchRefused("malformed data URI") from exc
    if len(content) > max_bytes:
        raise FetchRefused(f"data URI larger than {max_bytes} bytes")
    return content


_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64, IPv4-compatible), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if any(ip in net for net in (*_NAT64, _IPV4_COMPATIBLE)):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _public(address: str) -> bool:
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None and not (inner.is_global and not inner.is_multicast):
            return False
    return ip.is_global and not ip.is_multicast


async def resolve_public(host: str, port: int) -> list[str]:
    """Every address of `host`, in the resolver's preference order, if all of them are public."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchRefused(f"cannot resolve {host}") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses or not all(_public(a) for a in addresses):
        raise FetchRefused("URL points to a private or reserved address")
    return addresses


def check_url(url: str, *, allow_private: bool = False) -> None:
    """What can be known of a URL input without the network: http(s) with a host, or a data: URI; a literal
    private address (or localhost) is refused at once. Names are resolved and checked again when fetched."""
    if url.startswith("data:"):
        return
    if len(url) > MAX_URL_LENGTH:
        raise FetchRefused(f"URL longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        hostname, _port = parts.hostname, parts.port  # .port raises ValueError when out of range
        if hostname:
            hostname.encode("idna")  # an empty or over-long label, or characters IDNA refuses
    except (ValueError, UnicodeError) as exc:
        raise FetchRefused("malformed URL") from exc
    if parts.scheme not in ("http", "https") or not hostname:
        raise FetchRefused("only http(s) URLs and data URIs are accepted")
    if allow_private:
        return
    host = hostname.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        raise FetchRefused("URL points to a private or reserved address")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return
    if not _public(str(literal)):
        raise FetchRefused("URL points to a private or reserved address")


async def fetch(
    url: str,
    *,
    allowed: tuple[str, ...] | None,
    max_bytes: int,
    timeout_s: float,
    allow_private: bool = False,
) -> Fetched:
    """Download `url` (or decode a data: URI) and return its bytes and sniffed type, or raise FetchRefused."""
    if url.startswith("data:"):
        content = decode_data_uri(url, max_bytes=max_bytes)
        return Fetched(content, sniff(content, allowed))
    try:
        async with asyncio.timeout(timeout_s):  # one budget for resolving, redirects, headers and the body
            return await _download(url, allowed=allowed, max_bytes=max_bytes, allow_private=allow_private)
    except TimeoutError as exc:
        raise FetchRefused(f"the URL did not answer within {timeout_s:g} s") from exc
    except (ValueError, UnicodeError, httpx.InvalidURL) as exc:  # a bad port or host name, here or in a redirect
        raise FetchRefused("malformed URL") from exc


async def _download(url: str, *, allowed: tuple[str, ...] | None, max_bytes: int, allow_private: bool) -> Fetched:
    # No kept-alive connections: requests go to checked IP addresses, and a redirect to another name on the same
    # address must not reuse a TLS session verified for the first name.
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False, limits=limits) as client:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise FetchRefused("only http(s) URLs and data URIs are accepted")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            addresses = [parts.hostname] if allow_private else await resolve_public(parts.hostname, port)
            response = await connect_any(client, parts, port, addresses)
            try:
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                if response.status_code != 200:
                    raise FetchRefused(f"the URL answered HTTP {response.status_code}")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise FetchRefused(f"file larger than {max_bytes} bytes")
                content = bytearray()
                async for chunk in response.aiter_bytes():
                    content += chunk
                    if len(content) > max_bytes:
                        raise FetchRefused(f"file larger than {max_bytes} bytes")
            finally:
                await response.aclose()
            return Fetched(bytes(content), sniff(bytes(content), allowed))
    raise FetchRefused("too many redirects")


async def connect_any(
    client: httpx.AsyncClient,
    parts: SplitResult,
    port: int,
    addresses: list[str],
    *,
    method: str = "GET",
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Send to the first checked address that answers (GET by default; webhooks POST); Host and TLS SNI still name
    the original host. The response is streamed: the caller closes it."""
    error: Exception | None = None
    for address in addresses:
        host = f"[{address}]" if ":" in address else address
        target = parts._replace(netloc=f"{host}:{port}").geturl()
        request = client.build_request(
            method, target, headers={**(headers or {}), "Host": parts.netloc.rsplit("@", 1)[-1]},
            content=content, extensions={"sni_hostname": parts.hostname},
        )  # fmt: skip
        try:
            return await client.send(request, stream=True)
        except httpx.HTTPError as exc:  # e.g. an IPv6 address on an IPv4-only network: try the next one
            error = exc
    raise FetchRefused(f"could not reach the URL ({type(error).__name__})")
