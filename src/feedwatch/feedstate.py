"""Feed runtime state: what a poll's outcome does to its feed row, and the next request.

The store stage for the ``Feed`` table: validators, body hash, error counters, the state shown
to operators, poll and redirect history, and (through ``feedwatch.schedule``) the next check
time with its reason.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from feedwatch.fetch import FetchRequest, FetchResult
from feedwatch.models import Feed
from feedwatch.parse import ParsedFeed
from feedwatch.schedule import NextCheck, Timing, after_failure, after_success

if TYPE_CHECKING:
    from feedwatch.pipeline import PollReport


def fetch_request(feed: Feed, now: datetime, rng: random.Random) -> FetchRequest:
    """The request for this poll: conditional when the feed has validators."""
    return FetchRequest(url=feed.url, etag=feed.etag, last_modified=feed.last_modified, key=feed.id)


def _timing(feed: Feed) -> Timing:
    return Timing(feed.interval_minutes, feed.min_interval_minutes, feed.max_interval_minutes)


def _apply_next(feed: Feed, nxt: NextCheck, report: PollReport) -> None:
    feed.next_check_at, feed.state, feed.next_check_reason = nxt.at, nxt.state, nxt.reason
    feed.claimed_at = None
    report.next_check = nxt.reason


def _history(feed: Feed, report: PollReport, now: datetime) -> None:
    entry: dict[str, Any] = {
        "at": now.isoformat(timespec="seconds"),
        "outcome": report.outcome,
        "status": report.http_status,
        "entries": report.entries,
        "new": report.new,
    }
    if report.error_class:
        entry["error_class"] = report.error_class
    feed.poll_history = [*feed.poll_history[-19:], entry]


def record_success(
    session: Session,
    feed_id: int,
    result: FetchResult,
    body_hash: str | None,
    report: PollReport,
    now: datetime,
    rng: random.Random,
    parsed: ParsedFeed | None = None,
) -> None:
    """A poll that fetched (and, with ``parsed``, parsed) the feed."""
    feed = session.get(Feed, feed_id)
    assert feed is not None
    feed.unreported_claims = 0
    nxt = after_success(_timing(feed), now, result.not_modified, rng)
    _apply_next(feed, nxt, report)
    if result.etag or result.last_modified or not result.not_modified:
        feed.etag, feed.last_modified = result.etag, result.last_modified
    if body_hash is not None:
        feed.body_hash = body_hash
    feed.last_polled_at = feed.last_ok_at = now
    feed.last_status = result.status
    feed.last_entries, feed.last_new = report.entries, report.new
    feed.last_duration_ms = report.duration_ms
    feed.error_count = 0
    feed.error_class = feed.error_message = None
    if result.redirects:
        feed.redirect_history = [
            *feed.redirect_history[-9:],
            {
                "at": now.isoformat(timespec="seconds"),
                "chain": [[r.status, r.source, r.target] for r in result.redirects],
            },
        ]
    feed.updated_at = now
    _history(feed, report, now)
    session.add(feed)


def record_failure(
    session: Session,
    feed_id: int,
    error_class: str,
    message: str,
    retry_after: float | None,
    report: PollReport,
    now: datetime,
    rng: random.Random,
) -> None:
    feed = session.get(Feed, feed_id)
    assert feed is not None
    feed.unreported_claims = 0
    feed.error_count += 1
    feed.total_errors += 1
    feed.error_class, feed.error_message = error_class, message[:500]
    feed.last_error_at = feed.last_polled_at = now
    feed.last_status = report.http_status
    nxt = after_failure(_timing(feed), now, error_class, feed.error_count, retry_after, rng)
    _apply_next(feed, nxt, report)
    feed.updated_at = now
    _history(feed, report, now)
    session.add(feed)
