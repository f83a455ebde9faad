"""When is a feed due again, and why? Pure: the history, the hints, the clock and the jitter come in.

After a successful poll (rules applied in this order, each one named in the reason):

1. **Rate.** Items per hour, from what we saw: the new items in the recent polls over the time
   they span (Media Cloud's rss-fetcher idea), or over the last gap between polls when that is
   higher (a burst is seen on its first poll), when at least two new items were seen; else from
   what the feed shows of itself: its entries' publication dates (items over the span of their
   dates), bounded by the age of its newest item, so a feed whose newest item is a month old
   counts as one item a month at most (NewsBlur's stories-per-month idea, made continuous).
2. **Interval from rate.** ``RATE_CONSTANT / sqrt(items per minute)``: the interval that
   balances requests (∝ 1/T) against the delay of each item (∝ rate × T / 2), whose optimum is
   T ∝ 1/√rate. No rate known: the configured interval.
3. **Seen share.** A poll on which every entry was new (not the first poll) means the feed
   rolled over between polls and items may have been missed: half the interval.
4. **Smoothing.** The interval grows at most ×``MAX_GROWTH`` per poll (a feed going quiet backs
   off gradually, NewsBlur-style), and shrinks at once (a burst is caught at once).
5. **Bounds.** The feed's ``min``/``max`` from config; without them ``interval / MIN_SHRINK``
   and ``interval × MAX_STRETCH``, so the operator's interval stays the centre of the range.
6. **Server hints** (RSS ``ttl``, ``sy:updatePeriod``/``Frequency``, ``Cache-Control: max-age``,
   ``Expires``): a floor, capped at the feed's max; the operator's max wins over the server.
7. **Priority.** A feed tagged ``priority`` polls at its minimum while it is active (a new item
   in the last ``PRIORITY_ACTIVE``); soft hints do not slow it down.
8. **Jitter** ±``JITTER`` so feeds configured alike do not align.

After a failure: the feed's base interval × the class weight × consecutive failures (linear,
as NewsBlur: a flapping server is retried soon, a dead one ends at the cap), capped at
``MAX_BACKOFF``; a ``Retry-After`` asking for longer wins (up to ``MAX_RETRY_WAIT``). After
``FAILING_AFTER`` consecutive failures the state is ``failing``: it keeps being probed at the
capped rate and shows in status and metrics, never dropped silently. ``410 Gone`` disables.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from contextlib import suppress
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any

from feedwatch.immutable import immutable
from feedwatch.models import FeedState
from feedwatch.timeutil import parse_utc, to_utc

FAILING_AFTER = 5
MAX_BACKOFF = timedelta(hours=6)
MAX_RETRY_WAIT = timedelta(hours=24)
JITTER = 0.10
#: Minutes × sqrt(items per minute): one item an hour → 10 min, one a day → 49 min, 20 an hour
#: → 2.2 min. Tuned with benchmarks/simulate_schedule.py (docs/polling.md).
RATE_CONSTANT = 10 / math.sqrt(60)
MAX_GROWTH = 2.0
MIN_SHRINK = 5.0
MAX_STRETCH = 12.0
PRIORITY_ACTIVE = timedelta(days=2)
#: New items needed in the window before the observed rate is trusted over the feed's dates.
MIN_OBSERVED_NEW = 2

#: Backoff weight per failure class: how much harder than a plain doubling to back off.
#: Transient network trouble heals in minutes; a 4xx or a page that is not a feed needs a human.
CLASS_WEIGHT: dict[str, float] = {
    "timeout": 1.0,
    "connect": 1.0,
    "http_5xx": 1.0,
    "protocol": 1.5,
    "internal": 1.5,
    "http_429": 2.0,
    "dns": 2.0,
    "tls": 2.0,
    "crash": 2.0,
    "http_4xx": 3.0,
    "not_a_feed": 3.0,
    "parse_error": 3.0,
    "too_large": 3.0,
    "too_many_redirects": 3.0,
    "blocked_address": 4.0,
    "invalid_url": 4.0,
    "gone": 4.0,
}

_PERIOD_MINUTES = {"hourly": 60, "daily": 1440, "weekly": 10080, "monthly": 43200, "yearly": 525600}


@immutable
class Timing:
    """The feed's configured rhythm."""

    interval_minutes: float
    min_interval_minutes: float | None = None
    max_interval_minutes: float | None = None
    priority: bool = False

    def bounds(self) -> tuple[float, float]:
        low = self.min_interval_minutes or self.interval_minutes / MIN_SHRINK
        high = self.max_interval_minutes or max(self.interval_minutes * MAX_STRETCH, low)
        return low, max(high, low)


@immutable
class Hints:
    """What the server said about how often to come back, each in minutes."""

    ttl: float | None = None  # RSS <ttl>
    update_period: float | None = None  # sy:updatePeriod / sy:updateFrequency
    max_age: float | None = None  # Cache-Control: max-age
    expires: float | None = None  # Expires - now

    def floor(self) -> tuple[float, str] | None:
        named = [
            (v, n)
            for v, n in (
                (self.ttl, "ttl"),
                (self.update_period, "sy:update"),
                (self.max_age, "max-age"),
                (self.expires, "Expires"),
            )
            if v
        ]
        return max(named) if named else None


@immutable
class NextCheck:
    at: datetime
    state: str
    reason: str
    interval_minutes: float = 0.0  # the interval chosen before jitter (kept in the poll history)


def sy_minutes(period: str | None, frequency: int | None) -> float | None:
    """Minutes between updates announced by ``sy:updatePeriod`` / ``sy:updateFrequency``."""
    minutes = _PERIOD_MINUTES.get((period or "").strip().lower())
    if minutes is None:
        return None
    return minutes / max(frequency or 1, 1)


def hints_from(
    headers: Mapping[str, str],
    now: datetime,
    ttl_minutes: float | None = None,
    update_minutes: float | None = None,
) -> Hints:
    """The server's hints from a response's (lowercased) headers, with the feed's own: its RSS
    ``ttl`` and its ``sy:update`` period (:func:`sy_minutes`), in minutes, as a parse found them."""
    max_age: float | None = None
    cache_control = headers.get("cache-control", "").lower()
    if cache_control and "no-cache" not in cache_control and "no-store" not in cache_control:
        for directive in cache_control.split(","):
            name, _, value = directive.strip().partition("=")
            if name == "max-age" and value.strip().strip('"').isdigit():
                max_age = int(value.strip().strip('"')) / 60
    expires: float | None = None
    if max_age is None and headers.get("expires"):  # max-age overrides Expires (RFC 9111)
        with suppress(TypeError, ValueError, IndexError):
            when = to_utc(parsedate_to_datetime(headers["expires"]))
            expires = max((when - now).total_seconds() / 60, 0.0) or None
    ttl = float(ttl_minutes) if ttl_minutes and ttl_minutes > 0 else None
    return Hints(ttl, update_minutes or None, max_age or None, expires)


def _latest(history: Sequence[Mapping[str, Any]], key: str) -> Any:
    for entry in reversed(history):
        if entry.get(key) is not None:
            return entry[key]
    return None


def publication_rate(history: Sequence[Mapping[str, Any]], now: datetime) -> tuple[float | None, str]:
    """Items per hour and how that was estimated (see the module docstring, rule 1)."""
    polls = [h for h in history if h.get("outcome") != "error" and parse_utc(h.get("at"))]
    if len(polls) >= 2:
        # An entry can be a run of quiet polls (feedstate.fold_last): the window opens at its first.
        start = parse_utc(polls[0].get("since")) or parse_utc(polls[0]["at"])
        assert start is not None
        hours = (now - start).total_seconds() / 3600
        # The first poll's new items were published before the window opened: not counted.
        new = sum([int(p.get("new") or 0) for p in polls[1:]])
        if new >= MIN_OBSERVED_NEW and hours > 0:
            count = sum(int(p.get("n") or 1) for p in polls)
            rate, how = new / hours, f"{new / hours:.3g} items/h seen over {count} polls"
            last, before = int(polls[-1].get("new") or 0), parse_utc(polls[-2]["at"])
            gap = (now - before).total_seconds() / 3600 if before else 0.0
            if last >= MIN_OBSERVED_NEW and gap > 0 and last / gap > rate:
                rate, how = last / gap, f"{last / gap:.3g} items/h since the last poll"
            return rate, how
    declared = _latest(history, "rate")  # items per day, from the entries' dates
    newest = parse_utc(_latest(history, "newest"))
    if declared is None and newest is None:
        return None, "no publication rate yet"
    rate = float(declared) / 24 if declared else math.inf
    if newest is not None:
        age_hours = max((now - newest).total_seconds() / 3600, 1 / 60)
        if 1 / age_hours < rate:
            return 1 / age_hours, f"newest item {_human(age_hours * 60)} old"
    if math.isinf(rate):
        return None, "no publication rate yet"
    return rate, f"{rate:.3g} items/h by entry dates"


def _human(minutes: float) -> str:
    if minutes < 120:
        return f"{minutes:.3g} min"
    if minutes < 2880:
        return f"{minutes / 60:.3g} h"
    return f"{minutes / 1440:.3g} d"


@lru_cache(maxsize=256)
def _bounded(low: float, high: float) -> str:
    """A bounded interval's note: a feed's bounds are the same on every poll (its ``Timing``)."""
    return f"bounded [{_human(low)}, {_human(high)}]"


_JITTERED = f"±{JITTER:.0%} jitter"


def _overflowed(history: Sequence[Mapping[str, Any]]) -> bool:
    """The last poll found only new entries: the feed rolled over since the poll before."""
    ok = [h for h in history if h.get("outcome") != "error"]
    if len(ok) < 2:
        return False
    last = ok[-1]
    entries, new = int(last.get("entries") or 0), int(last.get("new") or 0)
    return entries >= 2 and new >= entries


def _priority_active(history: Sequence[Mapping[str, Any]], now: datetime) -> bool:
    newest = parse_utc(_latest(history, "newest"))
    return newest is None or now - newest <= PRIORITY_ACTIVE


def after_success(
    timing: Timing,
    now: datetime,
    not_modified: bool,
    rng: random.Random,
    history: Sequence[Mapping[str, Any]] = (),
    hints: Hints | None = None,
) -> NextCheck:
    """The next check after a poll that worked; ``history`` includes this poll (newest last)."""
    low, high = timing.bounds()
    rate, why = publication_rate(history, now)
    if rate is None:
        minutes, parts = timing.interval_minutes, [f"configured {_human(timing.interval_minutes)} ({why})"]
    else:
        minutes = RATE_CONSTANT / math.sqrt(rate / 60) if rate > 0 else math.inf
        parts = [f"rate {why} → {_human(minutes)}" if rate > 0 else f"no items ({why})"]
    if _overflowed(history):
        minutes /= 2
        parts.append("all entries new: halved")
    previous = _latest(history[:-1], "interval")
    if previous and minutes > float(previous) * MAX_GROWTH:
        minutes = float(previous) * MAX_GROWTH
        parts.append(f"grows ×{MAX_GROWTH:g} at most")
    if not low <= minutes <= high:
        minutes = min(max(minutes, low), high)
        parts.append(_bounded(low, high))
    floor = (hints or Hints()).floor()
    if timing.priority and _priority_active(history, now):
        minutes, parts = low, [f"priority, active: minimum {_human(low)}"]
    elif floor is not None and floor[0] > minutes:
        minutes = min(floor[0], high)
        parts.append(f"server {floor[1]} {_human(floor[0])}" + (" (capped)" if floor[0] > high else ""))
    parts.append(_JITTERED)
    jittered = minutes * (1 + rng.uniform(-JITTER, JITTER))
    state = FeedState.NOT_MODIFIED if not_modified else FeedState.OK
    return NextCheck(now + timedelta(minutes=jittered), state, "; ".join(parts), minutes)


def after_failure(
    timing: Timing,
    now: datetime,
    error_class: str,
    consecutive: int,
    retry_after: float | None,
    rng: random.Random,
) -> NextCheck:
    """``consecutive`` counts this failure too (1 on the first)."""
    if error_class == "gone":
        reason = "410 Gone: disabled (edit the feed's URL in the config to bring it back)"
        return NextCheck(now + MAX_BACKOFF, FeedState.DISABLED, reason)
    weight = CLASS_WEIGHT.get(error_class, 1.0)
    low, high = timing.bounds()
    base = timedelta(minutes=min(max(timing.interval_minutes, low), high))
    delay = min(base * weight * (1 + (consecutive - 1) / 2), MAX_BACKOFF)
    failing = consecutive >= FAILING_AFTER
    cap = _human(MAX_BACKOFF / timedelta(minutes=1))
    reason = f"backoff after {consecutive} × {error_class} (×{weight:g}, cap {cap})"
    if failing:
        reason = (
            f"failing: {consecutive} × {error_class}, probed every ≤{_human(delay / timedelta(minutes=1))}"
        )
    if retry_after is not None and timedelta(seconds=retry_after) > delay:
        delay = min(timedelta(seconds=retry_after), MAX_RETRY_WAIT)
        reason = f"server Retry-After {retry_after:g}s after {error_class}"
    delay *= 1 + rng.uniform(0, JITTER)
    state = FeedState.FAILING if failing else FeedState.BACKING_OFF
    return NextCheck(now + delay, state, reason, delay / timedelta(minutes=1))
