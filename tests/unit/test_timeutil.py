"""``timeutil.parse_utc``: the one reader of the ISO stamps the poll history and heartbeats hold;
``timeutil.stamp``, the cached writer of a poll's own time there."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from feedwatch.timeutil import parse_utc, stamp


def test_parse_utc_reads_iso_stamps_as_aware_utc_and_refuses_the_rest() -> None:
    assert parse_utc("2026-11-30T22:00:00+00:00") == datetime(2026, 11, 30, 22, tzinfo=UTC)
    assert parse_utc("2026-11-30T22:00:00") == datetime(2026, 11, 30, 22, tzinfo=UTC)  # naive: UTC
    assert parse_utc("2026-12-01T02:00:00+04:00") == datetime(2026, 11, 30, 22, tzinfo=UTC)
    assert parse_utc("yesterday") is None
    assert parse_utc(None) is None
    assert parse_utc(1_700_000_000) is None


def test_stamp_writes_what_isoformat_to_the_second_writes() -> None:
    """Cached by the whole second (``_second``): times within one second share a string, and
    none of them may read as another second, another zone or with its fraction."""
    rng = random.Random(56)
    start = datetime(1960, 1, 1, tzinfo=UTC)
    for _ in range(2_000):
        at = start + timedelta(seconds=rng.uniform(0, 3e9), microseconds=rng.randrange(1_000_000))
        zone = timezone(timedelta(minutes=rng.randrange(-720, 841, 15)))
        for value in (at, at.astimezone(zone), at.replace(tzinfo=None)):
            assert stamp(value) == value.isoformat(timespec="seconds")
    second = datetime(2026, 12, 6, 7, 0, 5, tzinfo=UTC)
    assert stamp(second + timedelta(microseconds=999_999)) == "2026-12-06T07:00:05+00:00"
    assert stamp(second - timedelta(microseconds=1)) == "2026-12-06T07:00:04+00:00"
