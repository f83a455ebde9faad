"""``timeutil.parse_utc``: the one reader of the ISO stamps the poll history and heartbeats hold."""

from __future__ import annotations

from datetime import UTC, datetime

from feedwatch.timeutil import parse_utc


def test_parse_utc_reads_iso_stamps_as_aware_utc_and_refuses_the_rest() -> None:
    assert parse_utc("2026-11-30T22:00:00+00:00") == datetime(2026, 11, 30, 22, tzinfo=UTC)
    assert parse_utc("2026-11-30T22:00:00") == datetime(2026, 11, 30, 22, tzinfo=UTC)  # naive: UTC
    assert parse_utc("2026-12-01T02:00:00+04:00") == datetime(2026, 11, 30, 22, tzinfo=UTC)
    assert parse_utc("yesterday") is None
    assert parse_utc(None) is None
    assert parse_utc(1_700_000_000) is None
