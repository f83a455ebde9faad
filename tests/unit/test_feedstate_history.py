"""What a parsed poll writes into its history entry (``feedstate.describe_parsed``): the values
the parse found, and no key for a value it did not find, even one carried from the poll before
(every reader takes a missing key for None; a null would be bytes read and written on every
poll)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from feedwatch import feedstate, splice
from feedwatch.parse import ParsedEntry, ParsedFeed
from feedwatch.schedule import publication_rate

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def _feed(dates: list[datetime | None], ttl: int | None = None, period: str | None = None) -> ParsedFeed:
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


def test_kept_items_count_with_the_new_ones_and_undated_or_future_items_do_not() -> None:
    """A changed feed's items found unchanged by the splice (``ParsedFeed.kept``) carry their
    dates as microseconds; the rate and the newest item read them with the parsed entries'."""
    new = [NOW - timedelta(hours=1, microseconds=7), None, NOW + timedelta(hours=2)]
    kept_dates = [NOW - timedelta(hours=h, seconds=13) for h in (30, 6, 3)]
    kept = (
        *(splice.item(i, None, d, 100) for i, d in enumerate(kept_dates)),
        splice.item(9, None, None, 100),  # undated
        splice.item(10, None, NOW + timedelta(minutes=61), 100),  # ahead of the clock
    )
    parsed = replace(_feed(new), kept=kept)
    entry: dict[str, object] = {}
    feedstate.describe_parsed(entry, parsed, NOW)
    counted = sorted([NOW - timedelta(hours=1, microseconds=7), *kept_dates])
    days = (counted[-1] - counted[0]).total_seconds() / 86400
    assert entry == {"newest": counted[-1].isoformat(timespec="seconds"), "rate": round(3 / days, 4)}
    # Within the hour ahead still counts.
    parsed = replace(parsed, kept=(splice.item(11, None, NOW + timedelta(minutes=59), 100),))
    feedstate.describe_parsed(entry, parsed, NOW)
    assert entry["newest"] == (NOW + timedelta(minutes=59)).isoformat(timespec="seconds")


def test_a_missing_rate_reads_as_a_null_one() -> None:
    """The schedule reads the two the same way, so dropping nulls changes no decision."""
    base = [{"at": (NOW - timedelta(hours=3)).isoformat(), "outcome": "ok", "new": 0, "rate": 24.0}]
    with_null = [*base, {"at": NOW.isoformat(), "outcome": "ok", "new": 0, "rate": None, "ttl": None}]
    without = [*base, {"at": NOW.isoformat(), "outcome": "ok", "new": 0}]
    expected = (1.0, "1 items/h by entry dates")
    assert publication_rate(with_null, NOW) == publication_rate(without, NOW) == expected


def _quiet(minutes_ago: float, **extra: object) -> dict[str, object]:
    at = (NOW - timedelta(minutes=minutes_ago)).isoformat(timespec="seconds")
    quiet = {"outcome": "not_modified", "status": 304, "entries": 0, "new": 0, "interval": 10.0}
    return {"at": at, **quiet, **extra}


def _fold_all(entries: list[dict[str, object]]) -> list[dict[str, object]]:
    """The history the service leaves after these polls, each folded as it came."""
    history: list[dict[str, object]] = []
    for entry in entries:
        history = feedstate.fold_last([*history, entry])
    return history


def test_a_run_of_alike_quiet_polls_is_one_entry_from_its_first_to_its_last() -> None:
    history = _fold_all([_quiet(30), _quiet(20), _quiet(10), _quiet(0)])
    assert history == [{**_quiet(0), "since": _quiet(30)["at"], "n": 4}]


def test_a_run_folds_across_a_changed_interval_and_keeps_its_last_one() -> None:
    """After a feed's last new item the interval moves on nearly every poll; the run holds the
    last poll's, which is what the schedule's smoothing reads (``after_success``)."""
    polls = [_quiet(30), _quiet(20, interval=12.5), _quiet(10, interval=15.625)]
    history = _fold_all(polls)
    assert history == [{**_quiet(10, interval=15.625), "since": _quiet(30)["at"], "n": 3}]
    # A poll that drops the key (none does) takes it out of the run rather than keep the old one.
    without = {k: v for k, v in _quiet(0).items() if k != "interval"}
    assert _fold_all([*polls, without])[-1] == {**without, "since": _quiet(30)["at"], "n": 4}


def test_anything_else_that_differs_starts_a_new_entry() -> None:
    ok = {**_quiet(40), "outcome": "ok", "status": 200, "entries": 50, "new": 2}
    unchanged = {**_quiet(10), "outcome": "unchanged", "status": 200}
    polls = [
        ok,
        {**ok, "at": _quiet(35)["at"]},  # not quiet: never folded, even when alike
        _quiet(30),
        _quiet(25, interval=20.0),  # another interval: the same run
        _quiet(20, interval=20.0, unconditional=True),  # fetched without validators
        _quiet(15, interval=20.0, unconditional=True),
        unchanged,  # another outcome
        {**_quiet(5), "outcome": "error", "error_class": "timeout"},
        _quiet(0),
    ]
    history = _fold_all(polls)
    assert [h.get("n", 1) for h in history] == [1, 1, 2, 2, 1, 1, 1]
    assert history[2] == {**_quiet(25, interval=20.0), "since": _quiet(30)["at"], "n": 2}
    assert history[3] == {**polls[5], "since": polls[4]["at"], "n": 2}
    assert [h["at"] for h in history] == [p["at"] for k, p in enumerate(polls) if k not in (2, 4)]


def test_the_observed_rate_counts_a_run_from_its_first_poll() -> None:
    """Five new items over the ten hours since the run's first poll: 0.5 an hour (counted from the
    run's last poll it would be 2.5)."""
    run = {**_quiet(120), "since": _quiet(600)["at"], "n": 9}
    found = {**_quiet(60), "outcome": "ok", "status": 200, "entries": 50, "new": 5}
    assert publication_rate([run, found, _quiet(0)], NOW) == (0.5, "0.5 items/h seen over 11 polls")


def _polls(history: list[dict[str, object]], *entries: dict[str, object]) -> list[dict[str, object]]:
    """``history`` after these polls, each pushed and folded as ``record_success`` does."""
    row: Any = SimpleNamespace(poll_history=history)
    for entry in entries:
        feedstate._push(row, entry)
        row.poll_history = feedstate.fold_last(row.poll_history)
    return list(row.poll_history)


def test_the_history_keeps_the_last_twenty_polls_a_run_counting_as_its_polls() -> None:
    quiet = [_quiet(10 * (24 - k)) for k in range(25)]  # every 10 minutes, the last one now
    assert _polls([], *quiet) == [{**_quiet(0), "since": quiet[5]["at"], "n": feedstate.HISTORY}]

    ok = [{**_quiet(10 * (5 - k)), "outcome": "ok", "new": 1} for k in range(5)]
    history = _polls([], *quiet[:15], *ok)  # a run of 15 polls, then 5 others: 20 polls
    assert [h.get("n", 1) for h in history] == [15, 1, 1, 1, 1, 1]
    history = _polls(history, {**_quiet(-10), "outcome": "ok", "new": 1})
    # The run gave up its first poll: it now starts where its second poll was.
    assert history[0] == {**quiet[14], "since": quiet[1]["at"], "n": 14}
    assert sum(int(h.get("n", 1)) for h in history) == feedstate.HISTORY


def test_a_history_of_single_polls_written_before_runs_keeps_its_last_twenty() -> None:
    old = [{**_quiet(10 * (20 - k)), "new": k} for k in range(20)]  # not alike: no runs
    history = _polls(old, _quiet(0))
    assert history == [*old[1:], _quiet(0)]
