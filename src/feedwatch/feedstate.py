"""Feed runtime state: what a poll's outcome does to its feed row, and the next request.

The store stage for the ``Feed`` table: validators, body hash, error counters, the state shown
to operators, poll and redirect history, and (through ``feedwatch.schedule``) the next check
time with its reason.

- **Conditional GET, checked.** Validators are sent, except on every ``UNCONDITIONAL_EVERY``-th
  poll or when the last unconditional fetch is ``UNCONDITIONAL_AFTER`` old: some servers answer
  304 forever while the feed changes. Without validators the body hash decides (the pipeline
  skips parsing an unchanged body). Feeds added together are polled together: each counts its
  first round of conditional polls from its own phase (``unconditional_phase``), so their
  unconditional fetches spread over the twenty polls instead of all falling on the same one.
- **Redirects.** A 301/308 chain is adopted as the feed's URL only after ``ADOPT_AFTER``
  consecutive successful polls ended at the same permanent target (NewsBlur, Feedbin); a
  302/307 anywhere in the chain is never adopted and resets the streak. Every chain is kept in
  ``redirect_history``.
- **History.** ``poll_history`` keeps the last ``HISTORY`` polls: outcome, entries, new, and
  what the schedule needs next time (newest item date, rate by entry dates, feed hints, interval).
  A run of quiet polls (304, or a body unchanged) that differ in nothing but their time and the
  interval chosen after them is one entry (``fold_last``): ``since`` its first poll, ``at`` and
  ``interval`` its last, ``n`` how many. The history is read and written back whole on every
  poll, and a quiet feed's twenty separate entries made a 304 cost a quarter more than an empty
  history (round 9 in docs/performance-history.md).
- **Writes.** The rules work on a ``FeedRow``, a plain copy of the state columns, never on the
  ``Feed`` model: setting a SQLModel attribute goes through pydantic and SQLAlchemy's
  instrumentation, which cost more than the rules themselves. A poll batch reads its rows with
  ``load()`` (one Core SELECT, before the fetch: the same rows give the fetch its
  ``PollTarget``), and inside ``batch()`` the changed columns are written with Core UPDATEs when
  the block ends; outside it, the changes are set on the session's ``Feed`` object. Either way
  only the columns whose value changed since the row was read are written, as an ORM flush
  would: a column another writer set meanwhile (an operator, a WebSub push) stays as it set it,
  unless the poll changed the same column.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from feedwatch import known, splice, store
from feedwatch.fetch import FetchRequest, FetchResult
from feedwatch.models import Feed, origin_of
from feedwatch.parse import ParsedFeed
from feedwatch.schedule import (
    Hints,
    NextCheck,
    Timing,
    after_failure,
    after_success,
    hints_from,
    sy_minutes,
)
from feedwatch.sources import PRIORITY_TAG
from feedwatch.timeutil import parse_utc, stamp, to_utc

if TYPE_CHECKING:
    from feedwatch.pipeline import PollReport

HISTORY = 20
UNCONDITIONAL_EVERY = 20
UNCONDITIONAL_AFTER = timedelta(hours=24)
ADOPT_AFTER = 3
#: A feed with a live WebSub subscription is polled at most this often, as a fallback.
WEBSUB_FALLBACK = timedelta(hours=2)
#: Carried from poll to poll so an unchanged body (not parsed again) keeps what the schedule needs.
_CARRIED = ("newest", "rate", "ttl", "sy")


@dataclass(slots=True, eq=False)
class FeedRow:
    """The columns of a feed row that a poll's outcome reads or writes, as plain attributes."""

    id: int
    url: str
    tags: list[str]
    interval_minutes: float
    min_interval_minutes: float | None
    max_interval_minutes: float | None
    state: str
    next_check_at: datetime
    next_check_reason: str
    claimed_at: datetime | None
    unreported_claims: int
    etag: str | None
    last_modified: str | None
    body_hash: str | None
    body_bytes: int | None
    last_polled_at: datetime | None
    last_ok_at: datetime | None
    last_status: int | None
    last_entries: int
    last_new: int
    last_duration_ms: int | None
    error_class: str | None
    error_message: str | None
    error_count: int
    total_errors: int
    last_error_at: datetime | None
    redirect_candidate: str | None
    redirect_count: int
    redirect_history: list[dict[str, Any]]
    poll_history: list[dict[str, Any]]
    conditional_polls: int
    last_unconditional_at: datetime | None
    websub_hub: str | None
    websub_topic: str | None
    websub_state: str | None
    websub_lease_until: datetime | None
    websub_last_push_at: datetime | None
    updated_at: datetime
    entry_fingerprints: bytes | None
    item_spans: bytes | None
    #: The values as loaded, in ``COLUMNS`` order: what ``changes()`` compares with.
    loaded: tuple[Any, ...] = field(default=(), repr=False)

    @classmethod
    def load(cls, values: tuple[Any, ...]) -> FeedRow:
        """The row from its column values in ``COLUMNS`` order."""
        row = cls(*values)
        row.loaded = values
        return row

    @classmethod
    def of(cls, feed: Feed) -> FeedRow:
        return cls.load(tuple(getattr(feed, name) for name in COLUMNS))

    def changes(self) -> dict[str, Any]:
        """The columns whose value differs from the loaded one (compared with ``==``, as the ORM
        does before it writes a column), in ``COLUMNS`` order; with a new ``url`` (a redirect's
        adoption), its ``origin``, which no poll reads otherwise. A value still the object
        loaded is not compared: most of a row's ~40 columns are, and ``is`` costs no call."""
        changed = {
            name: value
            for name, value, old in zip(COLUMNS, _values(self), self.loaded, strict=True)
            if value is not old and value != old
        }
        if "url" in changed:
            changed["origin"] = origin_of(changed["url"])
        return changed


#: The ``Feed`` columns a ``FeedRow`` holds.
COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(FeedRow) if f.name != "loaded")
_values = attrgetter(*COLUMNS)
#: ``load()`` reads ``COLUMNS`` and then these, the rest of a ``PollTarget``.
_TARGET_ONLY = tuple(c for c in store.POLL_COLUMNS if c not in COLUMNS)
_target_values = itemgetter(*((*COLUMNS, *_TARGET_ONLY).index(c) for c in store.POLL_COLUMNS))


def load(session: Session, feed_ids: Iterable[int]) -> list[tuple[store.PollTarget, FeedRow]]:
    """The feeds with these ids, in id order, from one SELECT: what a poll's fetch and parse read
    (``PollTarget``), and the state its outcome changes (``FeedRow``, for ``batch()``)."""
    return [
        (store.PollTarget(*_target_values(values)), FeedRow.load(values[: len(COLUMNS)]))
        for values in store.feed_columns(session, feed_ids, (*COLUMNS, *_TARGET_ONLY))
    ]


#: ``Session.info`` key of the open ``batch()``: feed id → its row.
_BATCH = "feedwatch.feedstate.batch"


@contextmanager
def batch(session: Session, rows: Mapping[int, FeedRow]) -> Iterator[None]:
    """Hold these feeds' state (from ``load()``) for the block: ``record_success`` /
    ``record_failure`` on this session change the copies in memory, and on leaving the block
    without an exception the columns changed since the rows were read are written
    (``store.update_feeds``: on PostgreSQL one statement for the rows, on SQLite one executemany
    per run of rows that change the same columns, as an ORM flush would), rows in id order, so
    they are locked in id order and at the end of the transaction."""
    session.info[_BATCH] = rows
    try:
        yield
    finally:
        session.info.pop(_BATCH, None)
    store.update_feeds(session, [(feed_id, rows[feed_id].changes()) for feed_id in sorted(rows)])


class _Editing:
    """The feed's state to change: its row in the open ``batch()``, or else a copy of the
    session's ``Feed`` whose changed columns are set back on it when the block ends without an
    exception. A class rather than a ``@contextmanager`` generator: every poll enters it, and
    the generator with its two wrappers cost ~6,000 instructions a poll (round 56)."""

    __slots__ = ("feed", "feed_id", "row", "session")

    def __init__(self, session: Session, feed_id: int) -> None:
        self.session, self.feed_id = session, feed_id
        self.feed: Feed | None = None

    def __enter__(self) -> FeedRow:
        rows: Mapping[int, FeedRow] | None = getattr(self.session, "info", {}).get(_BATCH)
        if rows is not None and self.feed_id in rows:
            return rows[self.feed_id]
        self.feed = self.session.get(Feed, self.feed_id)
        assert self.feed is not None
        self.row = FeedRow.of(self.feed)
        return self.row

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if self.feed is None or exc_type is not None:
            return
        for name, value in self.row.changes().items():
            setattr(self.feed, name, value)
        self.session.add(self.feed)


def unconditional_phase(feed_id: int) -> int:
    """Where a feed's count of conditional polls starts while it has no validators (before its
    first answer with one): its first unconditional fetch is the (``UNCONDITIONAL_EVERY`` −
    this)-th poll after the one that brought its validators, every later one
    ``UNCONDITIONAL_EVERY`` polls after the one before.

    Feeds added together (an import, a deployment's first start) poll at the same times while
    their intervals agree. Counted from zero, every one of them dropped its validators on the
    same poll: a full download of each feed in one round and none in the nineteen around it
    (the benchmark's pinned feeds: a capacity window with 7,000 such fetches or none). By the
    feed's id, a twentieth of them take each poll."""
    return feed_id % UNCONDITIONAL_EVERY


def wants_unconditional(feed: store.PollTarget, now: datetime) -> bool:
    if not (feed.etag or feed.last_modified):
        return False
    if feed.conditional_polls + 1 >= UNCONDITIONAL_EVERY:
        return True
    last = feed.last_unconditional_at or feed.created_at
    return now - to_utc(last) >= UNCONDITIONAL_AFTER


def fetch_request(feed: store.PollTarget, now: datetime, rng: random.Random) -> FetchRequest:
    """The request for this poll: conditional when the feed has validators, but not always."""
    if wants_unconditional(feed, now):
        return FetchRequest(url=feed.url, key=feed.id)
    return FetchRequest(url=feed.url, etag=feed.etag, last_modified=feed.last_modified, key=feed.id)


def timing(feed: FeedRow) -> Timing:
    return Timing(
        feed.interval_minutes,
        feed.min_interval_minutes,
        feed.max_interval_minutes,
        priority=PRIORITY_TAG in (feed.tags or []),
    )


def _apply_next(feed: FeedRow, nxt: NextCheck, report: PollReport, entry: dict[str, Any]) -> None:
    feed.next_check_at, feed.state, feed.next_check_reason = nxt.at, nxt.state, nxt.reason
    feed.claimed_at = None
    report.next_check = nxt.reason
    entry["interval"] = round(nxt.interval_minutes, 3)


def _entry(feed: FeedRow, report: PollReport, now: datetime) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "at": stamp(now),
        "outcome": report.outcome,
        "status": report.http_status,
        "entries": report.entries,
        "new": report.new,
    }
    if report.error_class:
        entry["error_class"] = report.error_class
    if feed.poll_history:
        previous = feed.poll_history[-1]
        for key in _CARRIED:
            if (value := previous.get(key)) is not None:
                entry[key] = value
    return entry


def _push(feed: FeedRow, entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Append this poll's entry and keep the last ``HISTORY`` polls, a run counting its ``n``."""
    history = [*feed.poll_history, entry]
    excess = sum([int(h.get("n", 1)) for h in history]) - HISTORY
    while excess > 0:
        polls = int(history[0].get("n", 1))
        if polls <= excess:
            del history[0]
            excess -= polls
        else:
            history[0] = _last_of_run(history[0], polls - excess)
            excess = 0
    feed.poll_history = history
    return history


def _last_of_run(run: dict[str, Any], keep: int) -> dict[str, Any]:
    """The run's last ``keep`` polls. Its first kept poll is placed by spacing the run's polls
    evenly between ``since`` and ``at`` (only ``since`` and ``n`` move): a run keeps no time of
    its polls between the two, and their intervals may have drifted (``fold_last``), so this
    is an estimate, as close as the intervals are alike."""
    since, last = parse_utc(run.get("since")), parse_utc(run.get("at"))
    if keep <= 1 or since is None or last is None:  # the last poll alone (or a run not as written here)
        return {k: v for k, v in run.items() if k not in ("since", "n")}
    step = (last - since) / (int(run["n"]) - 1)
    first = last - step * (keep - 1)
    return {**run, "since": first.isoformat(timespec="seconds"), "n": keep}


#: Polls that found nothing new and parsed nothing: a run of them may be one history entry.
_QUIET = frozenset({"not_modified", "unchanged"})
#: What may differ between two polls of one run: their time, and the interval the schedule chose
#: after each, of which the run keeps its last poll's. Two entries with these keys set alike (the
#: dicts merged in C) compare as the polls' other keys do: a comprehension that dropped the keys
#: from each entry cost ~11,000 instructions a quiet poll, 6 % of its ``record_success`` (round 56).
_BLANK: dict[str, Any] = dict.fromkeys(("at", "since", "n", "interval"))


def fold_last(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``history`` with its newest entry folded into the one before when both are quiet polls
    (``_QUIET``) alike in everything but their time and interval: the run becomes one entry,
    ``since`` its first poll, ``at`` and ``interval`` its last, ``n`` how many polls. Anything
    else that differs (an unconditional fetch, the status, the outcome) starts a new entry, so
    the history still shows it.

    The interval folds too: after a feed's last new item it moves on nearly every poll (the
    rate seen over a window that keeps growing, or the newest item's age), and a history that
    started a new entry for each held twenty entries, ~3 KB read and written back on every
    poll, for the feeds that matter most: ``simulate_schedule.py``'s hourly and news-desk feeds
    (round 42 in docs/performance-history.md). What the schedule reads of an interval is the
    last poll's (its smoothing), which the run keeps."""
    if len(history) < 2 or history[-1].get("outcome") not in _QUIET:
        return history
    before, last = history[-2], history[-1]
    if {**before, **_BLANK} != {**last, **_BLANK}:
        return history
    # Alike but for ``_BLANK``: the last poll's entry is the run's, with its start and count.
    run = {**last, "since": before.get("since", before["at"]), "n": int(before.get("n", 1)) + 1}
    return [*history[:-2], run]


def _date_span(parsed: ParsedFeed, now: datetime) -> tuple[int, int, int]:
    """How many of the feed's items are dated, and the oldest and newest date, as microseconds
    since 1970 (``splice.Item.micros``). Dates more than an hour ahead of ``now`` are left out:
    typos or time zones gone wrong, they would fake a fresh feed.

    In integers: a changed feed's kept items (48 of 50 in the steady mix) hold their dates so,
    and building a datetime for each, then sorting them, was ~3 % of a feeds worker while
    polling (round 19 in docs/performance-history.md)."""
    limit = splice.micros(now + timedelta(hours=1))
    dated = [m for m in (splice.micros(e.date) for e in parsed.entries) if splice.NO_DATE < m <= limit]
    dated.extend(item.micros for item in parsed.kept if splice.NO_DATE < item.micros <= limit)
    if not dated:
        return 0, 0, 0
    return len(dated), min(dated), max(dated)


def describe_parsed(entry: dict[str, Any], parsed: ParsedFeed, now: datetime) -> None:
    """Record what the feed shows of its own rhythm: newest item, items per day, hints.

    A value the parse did not find is removed from the entry (it may hold one carried from the
    poll before), not stored as null: every reader takes a missing key for None, and the
    history is read and written back whole on every poll."""
    count, oldest, newest = _date_span(parsed, now)
    if count:
        entry["newest"] = splice.date_of(newest).isoformat(timespec="seconds")
        days = (newest - oldest) / 86_400_000_000
        # Items over the span their dates cover; one date, or all alike, tells no rate.
        _set(entry, "rate", round((count - 1) / days, 4) if days > 0 and count > 1 else None)
    _set(entry, "ttl", parsed.ttl_minutes if parsed.ttl_minutes and parsed.ttl_minutes > 0 else None)
    _set(entry, "sy", sy_minutes(parsed.update_period, parsed.update_frequency))


def _set(entry: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        entry.pop(key, None)
    else:
        entry[key] = value


def _hints(result: FetchResult, entry: dict[str, Any], now: datetime) -> Hints:
    return hints_from(result.headers, now, entry.get("ttl"), entry.get("sy"))


def track_redirects(feed: FeedRow, result: FetchResult, now: datetime) -> str | None:
    """Count a permanent redirect towards adoption; returns the adopted URL when it happens."""
    if result.redirects:
        chain = [[r.status, r.source, r.target] for r in result.redirects]
        feed.redirect_history = [
            *feed.redirect_history[-9:],
            {"at": stamp(now), "chain": chain},
        ]
    target = result.permanent_redirect
    if target is None or target == feed.url:
        feed.redirect_candidate, feed.redirect_count = None, 0
        return None
    if target == feed.redirect_candidate:
        feed.redirect_count += 1
    else:
        feed.redirect_candidate, feed.redirect_count = target, 1
    if feed.redirect_count < ADOPT_AFTER:
        return None
    old, feed.url = feed.url, target
    feed.redirect_candidate, feed.redirect_count = None, 0
    feed.redirect_history = [
        *feed.redirect_history[-9:],
        {"at": stamp(now), "adopted": target, "previous": old},
    ]
    return target


def _track_validators(feed: FeedRow, result: FetchResult, now: datetime, entry: dict[str, Any]) -> None:
    if result.request.etag or result.request.last_modified:
        feed.conditional_polls += 1
    else:
        feed.last_unconditional_at = now
        if feed.etag or feed.last_modified:
            entry["unconditional"] = True
            feed.conditional_polls = 0
        else:  # no validators yet: its first count of conditional polls starts at its phase
            feed.conditional_polls = unconditional_phase(feed.id)
    if result.etag or result.last_modified or not result.not_modified:
        feed.etag, feed.last_modified = result.etag, result.last_modified


def _websub_fallback(feed: FeedRow, nxt: NextCheck, now: datetime) -> NextCheck:
    lease = feed.websub_lease_until
    if feed.websub_state != "subscribed" or lease is None or to_utc(lease) <= now:
        return nxt
    if nxt.at >= now + WEBSUB_FALLBACK:
        return nxt
    minutes = WEBSUB_FALLBACK / timedelta(minutes=1)
    reason = f"WebSub subscribed: fallback poll every {minutes:g} min"
    return NextCheck(now + WEBSUB_FALLBACK, nxt.state, reason, minutes)


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
    with _Editing(session, feed_id) as feed:
        feed.unreported_claims = 0
        entry = _entry(feed, report, now)
        if parsed is not None:
            describe_parsed(entry, parsed, now)
            # The caller stored every entry of ``parsed`` in this transaction (feedwatch.known).
            feed.entry_fingerprints = known.fingerprints(parsed)
            feed.item_spans = parsed.spans
            if parsed.hub_url:
                feed.websub_hub, feed.websub_topic = parsed.hub_url, parsed.self_url or result.url
        _track_validators(feed, result, now, entry)
        adopted = track_redirects(feed, result, now)
        if adopted:
            entry["adopted"] = adopted
        recovered = feed.error_count
        history = _push(feed, entry)
        nxt = after_success(timing(feed), now, result.not_modified, rng, history, _hints(result, entry, now))
        nxt = _websub_fallback(feed, nxt, now)
        if recovered:
            reason = f"recovered after {recovered} failures; {nxt.reason}"
            nxt = NextCheck(nxt.at, nxt.state, reason, nxt.interval_minutes)
        _apply_next(feed, nxt, report, entry)
        # After the schedule: it saw this poll as an entry of its own, as it sees every poll.
        feed.poll_history = fold_last(feed.poll_history)
        if body_hash is not None:  # a body came (not a 304): the tick sizes batches by it
            feed.body_hash, feed.body_bytes = body_hash, report.bytes
        feed.last_polled_at = feed.last_ok_at = now
        feed.last_status = result.status
        feed.last_entries, feed.last_new = report.entries, report.new
        feed.last_duration_ms = report.duration_ms
        feed.error_count = 0
        feed.error_class = feed.error_message = None
        feed.updated_at = now


def record_push(
    session: Session, feed_id: int, report: PollReport, now: datetime, parsed: ParsedFeed
) -> None:
    """Content a WebSub hub pushed: into the history (for the rate), the schedule unchanged."""
    with _Editing(session, feed_id) as feed:
        entry = _entry(feed, report, now)
        describe_parsed(entry, parsed, now)
        # A push holds few items: keep the feed's rate.
        _set(entry, "rate", entry.get("rate") or _latest_rate(feed))
        _push(feed, entry)
        feed.websub_last_push_at = feed.updated_at = now


def _latest_rate(feed: FeedRow) -> float | None:
    return next((h["rate"] for h in reversed(feed.poll_history) if h.get("rate")), None)


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
    with _Editing(session, feed_id) as feed:
        feed.unreported_claims = 0
        feed.error_count += 1
        feed.total_errors += 1
        # A message can quote the document (a declared encoding, a crash's text): PostgreSQL's
        # text cannot hold NUL, and one such value failed the whole batch's write.
        feed.error_class, feed.error_message = error_class, message.replace("\x00", "")[:500]
        feed.last_error_at = feed.last_polled_at = now
        feed.last_status = report.http_status
        entry = _entry(feed, report, now)
        nxt = after_failure(timing(feed), now, error_class, feed.error_count, retry_after, rng)
        _apply_next(feed, nxt, report, entry)
        _push(feed, entry)
        feed.updated_at = now
