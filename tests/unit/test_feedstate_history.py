"""What a parsed poll writes into its history entry (``feedstate.describe_parsed``): the values
the parse found, and no key for a value it did not find, even one carried from the poll before
(every reader takes a missing key for None; a null would be bytes read and written on every
poll)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from feedwatch import feedstate
from feedwatch.parse import ParsedEntry, ParsedFeed
from feedwatch.schedule import publication_rate

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def _feed(dates: list[datetime], ttl: int | None = None, period: str | None = None) -> ParsedFeed:
    blank = {"link": None, "title": "t", "summary_html": "", "content_html": "", "author": None}
    entries = tuple(
        ParsedEntry(guid=f"g{i}", **blank, published=d, updated=None, language=None, base=None)
        for i, d in enumerate(dates)
    )
    return ParsedFeed(
        title="f", link=None, language=None, entries=entries, bozo=False, bozo_message=None,
        ttl_minutes=ttl, update_period=period, update_frequency=2 if period else None,
        hub_url=None, self_url=None, format="rss20",
    )  # fmt: skip


def test_found_values_are_recorded() -> None:
    entry: dict[str, object] = {}
    dates = [NOW - timedelta(hours=h) for h in (48, 24, 0)]
    feedstate.describe_parsed(entry, _feed(dates, ttl=30, period="hourly"), NOW)
    assert entry == {"newest": NOW.isoformat(timespec="seconds"), "rate": 1.0, "ttl": 30, "sy": 30.0}


def test_values_not_found_leave_no_key_and_drop_the_carried_ones() -> None:
    carried = {"at": "x", "newest": "2026-11-01T00:00:00+00:00", "rate": 3.0, "ttl": 60, "sy": 120.0}
    entry: dict[str, object] = dict(carried)
    feedstate.describe_parsed(entry, _feed([NOW - timedelta(hours=2)]), NOW)
    # One date: a newest item, no rate; no ttl, no sy.
    assert entry == {"at": "x", "newest": (NOW - timedelta(hours=2)).isoformat(timespec="seconds")}

    entry = dict(carried)
    feedstate.describe_parsed(entry, _feed([]), NOW)
    # No dates at all: the newest item and the rate stay as carried (the parse says nothing of
    # either); the hints it does decide are gone.
    assert entry == {"at": "x", "newest": carried["newest"], "rate": 3.0}


def test_a_missing_rate_reads_as_a_null_one() -> None:
    """The schedule reads the two the same way, so dropping nulls changes no decision."""
    base = [{"at": (NOW - timedelta(hours=3)).isoformat(), "outcome": "ok", "new": 0, "rate": 24.0}]
    with_null = [*base, {"at": NOW.isoformat(), "outcome": "ok", "new": 0, "rate": None, "ttl": None}]
    without = [*base, {"at": NOW.isoformat(), "outcome": "ok", "new": 0}]
    expected = (1.0, "1 items/h by entry dates")
    assert publication_rate(with_null, NOW) == publication_rate(without, NOW) == expected
