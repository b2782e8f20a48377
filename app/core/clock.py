"""Time helpers: aware UTC datetimes inside, Meshy's epoch milliseconds on the wire."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_ms(moment: datetime | None) -> int:
    """Epoch milliseconds, with Meshy's `0` for an unset moment."""
    return int(moment.timestamp() * 1000) if moment is not None else 0
