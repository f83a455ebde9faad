"""The scheduling function on tables of poll histories: quiet, bursty, failing, recovering feeds."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from feedwatch.models import FeedState
from feedwatch.schedule import (
    FAILING_AFTER,
    MAX_BACKOFF,
    MAX_RETRY_WAIT,
    Hints,
    Timing,
    after_failure,
    after_success,
    hints_from,
    publication_rate,
    sy_minutes,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TEN = Timing(10.0)  # bounds [2, 120] minutes


class NoJitter(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return 0.0


def polls(
    news: list[int], every: float, entries: int = 20, newest_age: float | None = None, **extra: Any
) -> list[dict[str, Any]]:
    """A history of polls ``every`` minutes apart ending now; ``news[i]`` new items on poll i."""
    out = []
    for i, new in enumerate(news):
        at = NOW - timedelta(minutes=every * (len(news) - 1 - i))
        entry: dict[str, Any] = {"at": at.isoformat(), "outcome": "ok", "entries": entries, "new": new}
        if newest_age is not None:
            entry["newest"] = (NOW - timedelta(minutes=newest_age)).isoformat()
        entry.update(extra)
        out.append(entry)
    return out


def minutes(timing: Timing, history: list[dict[str, Any]], hints: Hints | None = None) -> tuple[float, str]:
    nxt = after_success(timing, NOW, False, NoJitter(), history, hints)
    return (nxt.at - NOW) / timedelta(minutes=1), nxt.reason


@pytest.mark.parametrize(
    ("name", "timing", "history", "low", "high"),
    [
        ("no history: configured interval", TEN, [], 10, 10),
        ("busy desk: 60 items/h → minimum", TEN, polls([20, 10, 10, 10, 10], 10), 2, 2),
        (
            "steady hourly: one item an hour",
            TEN,
            polls([5, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 1], 20),
            9.9,
            10.1,
        ),
        ("quiet weekly: by entry dates", TEN, polls([10], 60, rate=1 / 7, newest_age=3 * 1440), 120, 120),
        (
            "dead: newest item 90 days old",
            TEN,
            polls([10, 0, 0], 120, rate=1.0, newest_age=90 * 1440),
            120,
            120,
        ),
        ("configured max wins", Timing(10, 1, 30), polls([10], 60, rate=0.1, newest_age=5000), 30, 30),
        ("configured min wins", Timing(10, 5, 60), polls([20, 30, 30, 30], 2), 5, 5),
    ],
)
def test_adaptive_interval(
    name: str, timing: Timing, history: list[dict[str, Any]], low: float, high: float
) -> None:
    got, reason = minutes(timing, history)
    assert low <= got <= high, (name, got, reason)
    assert "jitter" in reason


def test_quiet_feed_backs_off_gradually() -> None:
    """A busy feed going quiet grows at most ×2 per poll (NewsBlur's gradual backoff)."""
    history = polls([20, 0, 0, 0], 60, rate=24.0, newest_age=10 * 1440, interval=2.0)
    got, reason = minutes(TEN, history)
    assert got == pytest.approx(4.0)
    assert "grows ×2 at most" in reason


def test_burst_shrinks_at_once() -> None:
    history = polls([0, 0, 0, 0, 15], 30, interval=120.0)
    got, _ = minutes(TEN, history)
    assert got <= 10


def test_all_new_halves_the_interval() -> None:
    """Every entry new on a later poll: the feed rolled over, items may have been missed."""
    base, _ = minutes(TEN, polls([10, 0, 3], 30, entries=10))
    rolled, reason = minutes(TEN, polls([10, 0, 10], 30, entries=10))
    assert "all entries new" in reason
    assert rolled < base


def test_first_poll_backlog_is_not_a_rate() -> None:
    rate, how = publication_rate(polls([50], 10), NOW)
    assert rate is None and "no publication rate" in how


@pytest.mark.parametrize(
    ("hints", "expect", "word"),
    [
        (Hints(ttl=60), 60, "ttl"),
        (Hints(update_period=1440), 120, "capped"),  # the feed's max (120) beats the server
        (Hints(max_age=30, expires=45), 45, "Expires"),
        (Hints(max_age=1), 10, "configured"),  # a floor below the interval changes nothing
    ],
)
def test_server_hints_are_a_floor(hints: Hints, expect: float, word: str) -> None:
    got, reason = minutes(TEN, [], hints)
    assert got == pytest.approx(expect)
    assert word in reason


def test_priority_polls_at_minimum_while_active() -> None:
    priority = Timing(10, priority=True)
    got, reason = minutes(priority, polls([10, 0], 10, newest_age=60), Hints(ttl=60))
    assert got == pytest.approx(2) and "priority" in reason
    # quiet for a week: no longer active, so it adapts like any feed
    got, reason = minutes(priority, polls([10, 0], 10, newest_age=7 * 1440, rate=0.2))
    assert got > 2 and "priority" not in reason


def test_jitter_spreads_feeds() -> None:
    rng = random.Random(7)
    times = {after_success(TEN, NOW, False, rng).at for _ in range(50)}
    spread = (max(times) - min(times)) / timedelta(minutes=1)
    assert len(times) == 50 and 0 < spread <= 2.0


@pytest.mark.parametrize(
    ("headers", "field", "value"),
    [
        ({"cache-control": "public, max-age=600"}, "max_age", 10),
        ({"cache-control": "no-cache, max-age=600"}, "max_age", None),
        ({"expires": "Sat, 01 Mar 2025 13:00:00 GMT"}, "expires", 60),
        ({"expires": "0"}, "expires", None),
        ({"cache-control": "max-age=60", "expires": "Sat, 01 Mar 2025 13:00:00 GMT"}, "expires", None),
    ],
)
def test_hints_from_headers(headers: dict[str, str], field: str, value: float | None) -> None:
    assert getattr(hints_from(headers, NOW), field) == value


def test_sy_update() -> None:
    assert sy_minutes("hourly", 2) == 30
    assert sy_minutes("daily", None) == 1440
    assert sy_minutes("fortnightly", 1) is None


# --- failures ------------------------------------------------------------------------------------


def fail(error_class: str, consecutive: int, retry_after: float | None = None) -> tuple[float, str, str]:
    nxt = after_failure(TEN, NOW, error_class, consecutive, retry_after, NoJitter())
    return (nxt.at - NOW) / timedelta(minutes=1), nxt.state, nxt.reason


@pytest.mark.parametrize(
    ("error_class", "consecutive", "expect", "state"),
    [
        ("timeout", 1, 10, FeedState.BACKING_OFF),
        ("timeout", 2, 15, FeedState.BACKING_OFF),
        ("timeout", 4, 25, FeedState.BACKING_OFF),
        ("http_5xx", FAILING_AFTER, 30, FeedState.FAILING),
        ("dns", 1, 20, FeedState.BACKING_OFF),
        ("http_4xx", 1, 30, FeedState.BACKING_OFF),
        ("blocked_address", 3, 80, FeedState.BACKING_OFF),
        ("connect", 100, 360, FeedState.FAILING),  # capped: still probed every 6 h
        ("crash", 1, 20, FeedState.BACKING_OFF),
        ("something_new", 1, 10, FeedState.BACKING_OFF),
    ],
)
def test_backoff_grows_linearly_capped(error_class: str, consecutive: int, expect: float, state: str) -> None:
    got, got_state, reason = fail(error_class, consecutive)
    assert got == pytest.approx(expect)
    assert got_state == state
    assert error_class in reason


def test_failing_feed_keeps_being_probed() -> None:
    got, state, reason = fail("dns", 50)
    assert state == FeedState.FAILING and "probed" in reason
    assert got <= MAX_BACKOFF / timedelta(minutes=1)


def test_retry_after_wins_when_longer() -> None:
    got, _, reason = fail("http_429", 1, retry_after=3600)
    assert got == pytest.approx(60) and "Retry-After" in reason
    got, _, _ = fail("http_429", 1, retry_after=5)  # shorter than our backoff: ours
    assert got == pytest.approx(20)
    got, _, _ = fail("http_5xx", 1, retry_after=10 * 86400)
    assert got == pytest.approx(MAX_RETRY_WAIT / timedelta(minutes=1))


def test_gone_disables() -> None:
    _, state, reason = fail("gone", 1)
    assert state == FeedState.DISABLED and "410" in reason


def test_recovering_feed_returns_to_its_rhythm() -> None:
    """After failures the success path ignores the backoff: the rate decides again."""
    history = polls([10, 0, 1, 0, 1], 20, interval=360.0)
    history[-2]["outcome"] = "error"
    got, _ = minutes(TEN, history)
    assert got < 60


def test_burst_is_seen_on_its_first_poll() -> None:
    """After a quiet spell the whole window's rate is low; the last gap's rate catches the burst."""
    history = polls([10, 0, 0, 0, 0, 0, 0, 0, 0, 1, 12], 30)
    got, reason = minutes(TEN, history)
    assert "since the last poll" in reason and got <= 3
