"""Where a webhook may point, and POSTing one signed delivery there through the SSRF guard.

https only, and every address the name resolves to must be public (app.core.fetch's rules); the connection goes
to the checked address, redirects are never followed. `allow_local` (WEBHOOK_ALLOW_LOCAL, development and tests)
also admits http and private or loopback receivers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from app.core import fetch
from app.core.fetch import FetchRefused

MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Outcome:
    """One attempt: delivered (a 2xx), or why not (the receiver's status, or our error text)."""

    delivered: bool
    status_code: int | None
    message: str
    refused: bool = False  # our address guard refused the target (nothing was sent)


def check_target(url: str, *, allow_local: bool) -> None:
    """What can be known of a webhook URL without the network; FetchRefused with a message for the caller."""
    if len(url) > MAX_URL_LENGTH:
        raise FetchRefused(f"URL longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise FetchRefused("URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise FetchRefused("malformed URL") from exc
    if parts.scheme != "https" and not (allow_local and parts.scheme == "http"):
        raise FetchRefused("webhook URLs must be https")
    if parts.username is not None or parts.password is not None:
        raise FetchRefused("credentials in the URL are not supported: check the signature instead")
    fetch.check_url(url, allow_private=allow_local)


async def addresses_of(url: str, *, allow_local: bool) -> list[str]:
    """The checked addresses to connect to: all public, or FetchRefused (the name is resolved again each time)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if allow_local:
        return [host]
    async with asyncio.timeout(RESOLVE_TIMEOUT_S):
        return await fetch.resolve_public(host, parts.port or 443)


async def post(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], *, allow_local: bool, timeout_s: float
) -> Outcome:
    """POST `body` to `url` once; never raises for what the receiver or the network does."""
    try:
        check_target(url, allow_local=allow_local)
        async with asyncio.timeout(timeout_s):
            addresses = await addresses_of(url, allow_local=allow_local)
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            response = await fetch.connect_any(
                client, parts, port, addresses, method="POST", content=body,
                headers={**headers, "content-type": "application/json"},
            )  # fmt: skip
            await response.aclose()
    except FetchRefused as exc:
        return Outcome(False, None, str(exc), refused=True)
    except TimeoutError:
        return Outcome(False, None, f"no answer within {timeout_s:g} s")
    except (ValueError, UnicodeError, httpx.HTTPError) as exc:
        return Outcome(False, None, f"could not deliver ({type(exc).__name__})")
    if 200 <= response.status_code < 300:
        return Outcome(True, response.status_code, "")
    return Outcome(False, response.status_code, f"HTTP {response.status_code}")
