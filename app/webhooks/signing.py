"""Standard Webhooks signing: each endpoint's `whsec_` secret and the `webhook-*` headers of a delivery.

The signature is `v1,` + base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")), as the
standardwebhooks libraries verify it. The key is derived from the server's secret and the endpoint's random seed,
so it is never stored: rotating MESHFOUNDRY_SECRET_KEY changes every endpoint's secret (as it does API keys).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"


def new_seed() -> str:
    """A fresh random seed for a new endpoint's secret (256 bits)."""
    return secrets.token_urlsafe(32)


def signing_key(server_secret: bytes, seed: str) -> bytes:
    """The endpoint's 32-byte HMAC key."""
    root = hashlib.sha256(b"webhook-secret:" + server_secret).digest()
    return hmac.new(root, seed.encode(), hashlib.sha256).digest()


def secret_text(key: bytes) -> str:
    """The key as Standard Webhooks writes a secret: `whsec_` + base64."""
    return SECRET_PREFIX + base64.b64encode(key).decode()


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt (the timestamp is the attempt's, in seconds)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, msg_id, timestamp, body),
    }
