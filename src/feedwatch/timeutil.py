"""Time helpers. The database stores naive UTC datetimes; everything converts at the edge."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, as a naive UTC datetime (the form stored in every table)."""
    return datetime.now(UTC).replace(tzinfo=None)


def to_naive_utc(value: datetime) -> datetime:
    """Any datetime as naive UTC; a naive input is taken to be UTC already."""
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def isoformat_utc(value: datetime | None) -> str | None:
    """ISO 8601 with a ``Z`` suffix, for JSON output."""
    if value is None:
        return None
    return to_naive_utc(value).isoformat(timespec="seconds") + "Z"
