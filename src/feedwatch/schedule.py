"""When is a feed due again, and in what state is it? Pure: the clock and the jitter come in.

Rules, in order:
1. ``410 Gone`` disables the feed (state ``disabled``, shown in status; re-enabled by config sync
   only when an operator edits it back in).
2. A failure backs off: the feed's interval doubled per consecutive failure, weighted by class
   (a DNS failure or a 4xx is less likely to heal in minutes than a timeout), capped at
   ``MAX_BACKOFF``; a server's ``Retry-After`` wins when it asks for longer. After
   ``FAILING_AFTER`` consecutive failures the state is ``failing``: the feed is still probed at
   the capped rate, never dropped silently.
3. Success polls again after the feed's interval, clamped to its configured min/max, with
   ±10 % jitter so feeds configured alike do not align.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from feedwatch.models import FeedState

FAILING_AFTER = 5
MAX_BACKOFF = timedelta(hours=6)
JITTER = 0.10

#: Backoff weight per failure class: how much harder than a plain doubling to back off.
CLASS_WEIGHT: dict[str, float] = {
    "timeout": 1.0,
    "connect": 1.0,
    "http_5xx": 1.0,
    "protocol": 1.5,
    "http_429": 2.0,
    "dns": 2.0,
    "tls": 2.0,
    "http_4xx": 3.0,
    "not_a_feed": 3.0,
    "parse_error": 3.0,
    "too_large": 3.0,
    "too_many_redirects": 3.0,
    "blocked_address": 4.0,
    "invalid_url": 4.0,
    "gone": 4.0,
}


@dataclass(frozen=True)
class Timing:
    interval_minutes: float
    min_interval_minutes: float | None = None
    max_interval_minutes: float | None = None


@dataclass(frozen=True)
class NextCheck:
    at: datetime
    state: str
    reason: str


def _clamp(minutes: float, timing: Timing) -> float:
    if timing.min_interval_minutes is not None:
        minutes = max(minutes, timing.min_interval_minutes)
    if timing.max_interval_minutes is not None:
        minutes = min(minutes, timing.max_interval_minutes)
    return minutes


def after_success(timing: Timing, now: datetime, not_modified: bool, rng: random.Random) -> NextCheck:
    minutes = _clamp(timing.interval_minutes, timing)
    jittered = minutes * (1 + rng.uniform(-JITTER, JITTER))
    state = FeedState.NOT_MODIFIED if not_modified else FeedState.OK
    reason = f"interval {minutes:g} min ±{JITTER:.0%} jitter"
    return NextCheck(at=now + timedelta(minutes=jittered), state=state, reason=reason)


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
        return NextCheck(at=now + MAX_BACKOFF, state=FeedState.DISABLED, reason="410 Gone: disabled")
    weight = CLASS_WEIGHT.get(error_class, 1.0)
    base = timedelta(minutes=_clamp(timing.interval_minutes, timing))
    delay = min(base * weight * 2 ** min(consecutive - 1, 16), MAX_BACKOFF)
    reason = f"backoff after {consecutive} × {error_class} (×{weight:g})"
    if retry_after is not None and timedelta(seconds=retry_after) > delay:
        delay = min(timedelta(seconds=retry_after), MAX_BACKOFF * 4)
        reason = f"Retry-After {retry_after:g}s after {error_class}"
    delay *= 1 + rng.uniform(0, JITTER)
    state = FeedState.FAILING if consecutive >= FAILING_AFTER else FeedState.BACKING_OFF
    return NextCheck(at=now + delay, state=state, reason=reason)
