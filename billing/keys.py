"""API key format and keyed hashing: keys are shown once and stored only as an HMAC."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

KEY_PREFIX = "msy_"
KEY_RANDOM_LENGTH = 40
_ALPHABET = string.ascii_letters + string.digits


def generate_key() -> str:
    """A new key: `msy_` and 40 random alphanumerics (Meshy's keys use 36)."""
    return KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(KEY_RANDOM_LENGTH))


def hash_key(key: str, secret: bytes) -> str:
    """The keyed hash stored for a key; a leaked table without the secret reveals nothing usable."""
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


def display_prefix(key: str) -> str:
    """The part of a key safe to show in listings (`msy_AbCd`)."""
    return key[:8]


def looks_like_key(token: str) -> bool:
    """Cheap format check before any database work (Meshy accepts `msy_` and `msy-`)."""
    return token.startswith(("msy_", "msy-")) and 8 <= len(token) <= 200
