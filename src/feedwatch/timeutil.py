"""Time helpers. Every stored datetime is timezone-aware UTC (SQLModel's UTCDateTime enforces it)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, timezone-aware, in UTC."""
    return datetime.now(UTC)


def to_utc(value: datetime) -> datetime:
    """Any datetime as aware UTC; a naive input is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def isoformat_utc(value: datetime | None) -> str | None:
    """ISO 8601 with a ``Z`` suffix, for JSON output."""
    if value is None:
        return None
    return to_utc(value).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
