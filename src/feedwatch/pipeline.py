"""The pipeline: the one place that knows the order of the stages.

    tick:  claim due feeds ─► send poll messages; re-send alerts whose message may be lost
    poll:  fetch ─► parse ─► normalize ─► rules ─► store (articles, matches, alert rows, feed
           state: ONE transaction per batch of feeds) ─► after commit, publish new alert ids
    deliver: outbox row ─► every channel (see ``feedwatch.alerts``)

Celery is not imported here: the worker hands in ``publish_poll`` / ``publish_alert`` callables,
so the same code runs under a worker, in ``feedwatch ingest`` and in tests.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import structlog
import xxhash
from sqlalchemy import text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlmodel import Session

from feedwatch import feedstate, known, metrics, store, stories
from feedwatch.db import read_scope, session_scope
from feedwatch.extract import ExtractedText, ExtractionError, extract
from feedwatch.fetch import (
    AddressPolicy,
    FetchConfig,
    FetchError,
    FetchRequest,
    FetchResult,
    fetch_all,
    fetch_one,
)
from feedwatch.models import Article, Feed
from feedwatch.normalize import (
    ArticleDraft,
    Undetected,
    draft_feed,
    entry_identity_key,
    normalize_feed,
    set_languages,
)
from feedwatch.parse import ParsedFeed, ParseError, parse_feed
from feedwatch.rules import Rulebook, TopicMatch, load_rulebook
from feedwatch.settings import Settings
from feedwatch.textnorm import Words, split_words
from feedwatch.timeutil import parse_utc, to_utc, utcnow

_LOG_NAME = "feedwatch.pipeline"
log = structlog.get_logger(_LOG_NAME)

PublishAlert = Callable[[list[int]], None]
PublishPoll = Callable[[list[int]], None]
PublishArticles = Callable[[list[int]], None]

_rulebooks: dict[Path, tuple[float, Rulebook]] = {}
T = TypeVar("T")


#: The worker processes' garbage-collector thresholds (``gc.set_threshold``; workers/app.py).
#: Python's default (700, 10, 10) ran a collection every 700 container allocations, and a poll
#: batch lives long enough to be promoted to the oldest generation and make full collections
#: (~40 ms each) come often: 4.1-4.3 % of a process's CPU in ``poll_costs.py``, 2.8 % with
#: these (round 20). Objects freed by reference counting (nearly all) never wait for them.
GC_THRESHOLDS = (10_000, 20, 20)


def get_rulebook(path: Path) -> Rulebook:
    """The compiled rulebook for ``path``, compiled once per process and again when it changes."""
    mtime = path.stat().st_mtime
    cached = _rulebooks.get(path)
    if cached is None or cached[0] != mtime:
        cached = _rulebooks[path] = (mtime, load_rulebook(path))
    return cached[1]


@dataclass
class Context:
    """What a stage run needs from its process: settings, compiled rules, clients, the clock."""

    settings: Settings
    publish_alert: PublishAlert | None = None
    publish_poll: PublishPoll | None = None
    publish_article: PublishArticles | None = None
    clock: Callable[[], datetime] = utcnow
    rng: random.Random = field(default_factory=random.Random)
    policy: AddressPolicy | None = None

    @property
    def rulebook(self) -> Rulebook:
        return get_rulebook(self.settings.rules_file)

    @property
    def fetch_config(self) -> FetchConfig:
        return FetchConfig.from_settings(self.settings)

    @property
    def address_policy(self) -> AddressPolicy:
        return self.policy or AddressPolicy.from_settings(self.settings)


def _fatal(exc: Exception) -> bool:
    """Errors that must fail the task instead of being recorded on one feed or article.

    A database error (the database is down: the claims expire and the work is retried), memory
    exhaustion, and Celery's soft time limit (matched by name: this module imports no Celery).
    """
    return isinstance(exc, SQLAlchemyError | MemoryError) or type(exc).__name__ == "SoftTimeLimitExceeded"


# --- tick --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TickReport:
    claimed: int
    batches: int
    alerts_requeued: int
    swept: bool = False


#: A feed whose polls died this many times without reporting is failed as ``crash``.
CRASH_LIMIT = 3


def tick(ctx: Context) -> TickReport:
    """Claim due feeds and send them out in batches; re-send alerts stuck in the outbox.

    A feed whose last poll never reported back (worker killed, time limit, lost message) is
    polled alone, so a poison feed cannot take a batch of healthy feeds down with it; after
    ``CRASH_LIMIT`` such claims it is failed as ``crash`` and backs off like any failure.

    The claim runs on every tick (every ``tick_seconds``: it bounds how long a due feed waits).
    The sweep for lost messages (alerts in the outbox, full-text candidates) runs at most every
    ``sweep_seconds``: the ``beat`` heartbeat, which every tick rewrites anyway, records when the
    last sweep ran. Two ticks that both sweep (two beats) are harmless, as a duplicate message
    always is. A tick logs ``tick`` only when it claimed or re-sent something.
    """
    s = ctx.settings
    now = ctx.clock()
    requeue: list[int] = []
    with session_scope(s) as session:
        claimed = store.claim_due_feeds(session, now, s.claim_batch, s.claim_lease_seconds, rounds(s))
        early = sum(c.early for c in claimed)
        for feed_id, unreported, *_ in claimed:
            if unreported >= CRASH_LIMIT:
                message = f"{unreported} polls died without reporting (killed, time limit, lost)"
                crash = PollReport(feed_id, "", "error", error_class="crash", error=message)
                feedstate.record_failure(session, feed_id, "crash", message, None, crash, now, ctx.rng)
                log.warning("feed.crashed", feed_id=feed_id, unreported=unreported)
        previous = store.heartbeat_detail(session, "beat") or {}
        swept_at = previous.get("swept_at")
        sweep = not _recent(swept_at, now, s.sweep_seconds)
        if sweep:
            requeue = store.alerts_to_requeue(
                session,
                now,
                pending_grace=timedelta(seconds=10),
                queued_timeout=timedelta(seconds=s.alert_requeue_seconds),
                limit=1000,
            )
            swept_at = to_utc(now).isoformat()
        detail = {
            "claimed": len(claimed),
            "early": early,
            "swept_at": swept_at,
            "requeue": len(requeue) if sweep else previous.get("requeue", 0),
        }
        store.write_heartbeat(session, "beat", now, detail)
    # Each healthy feed with the bytes its poll is expected to bring, an origin's feeds together
    # (in a batch they share a connection).
    healthy = {
        c.id: UNKNOWN_BODY_BYTES if c.body_bytes is None else c.body_bytes
        for c in sorted(claimed, key=_by_origin)
        if c.unreported == 0
    }
    suspect = [c.id for c in claimed if 0 < c.unreported < CRASH_LIMIT]
    origins = {c.id: c.origin for c in claimed}
    most_of_origin = origin_most(s)
    batches = [
        piece
        for batch in poll_batches(healthy, s.poll_batch_size, s.poll_batch_bytes, s.poll_min_batches)
        for piece in cut_by_origin(batch, [origins[f] for f in batch], most_of_origin)
    ] + [[f] for f in suspect]
    unsent: list[int] = []
    for batch in batches:
        try:
            assert ctx.publish_poll is not None
            ctx.publish_poll(batch)
        except Exception as exc:  # noqa: BLE001 - broker down: release the claim, try next tick
            log.warning("tick.publish_failed", feeds=len(batch), error=str(exc))
            unsent.extend(batch)
    if unsent:
        with session_scope(s) as session:
            store.release_claims(session, unsent, now)
    requeued = publish_alerts(ctx, requeue)
    articles = requeue_full_text(ctx, now) if sweep else 0
    if claimed or requeued or articles:
        log.info(
            "tick",
            claimed=len(claimed),
            early=early,
            batches=len(batches),
            alerts_requeued=requeued,
            articles_requeued=articles,
        )
    return TickReport(claimed=len(claimed), batches=len(batches), alerts_requeued=requeued, swept=sweep)


#: How long the pacing of a host's requests (``per_host_min_gap_seconds``) may spread a round:
#: a tick takes an origin's feeds early only while their requests can start within this.
ROUND_PACING_SECONDS = 5.0


def rounds(s: Settings) -> store.Rounds | None:
    """The settings' rounds (``poll_round_share``, ``poll_round_seconds``); None when off.

    A round is as many of an origin's feeds as its host's pacing lets start within
    ``ROUND_PACING_SECONDS`` (11 at the default 0.5 s apart), or without pacing as many as its
    slots take at once (``per_host_concurrency``): they go out on one connection, or one a slot."""
    if s.poll_round_share <= 0 or s.poll_round_seconds <= 0:
        return None
    gap = s.per_host_min_gap_seconds
    per_origin = paced_starts(ROUND_PACING_SECONDS, gap) if gap > 0 else s.per_host_concurrency
    return store.Rounds(s.poll_round_share, timedelta(seconds=s.poll_round_seconds), per_origin)


def paced_starts(seconds: float, gap: float) -> int:
    """How many requests to one host start within ``seconds`` when each starts ``gap`` seconds
    after the one before (``per_host_min_gap_seconds``, more than 0): the first at once."""
    return 1 + int(seconds / gap)


def _by_origin(claim: store.Claim) -> tuple[str, int]:
    return (claim.origin or "", claim.id)


def _recent(stamp: Any, now: datetime, seconds: float) -> bool:
    """``stamp`` (ISO) lies within the ``seconds`` before ``now``. A stamp ahead of ``now``
    (another host's clock) is not recent, so a skewed clock cannot hold the sweep off; a missing
    or unreadable one is not recent either."""
    at, now = parse_utc(stamp), to_utc(now)
    return at is not None and now - timedelta(seconds=seconds) < at <= now


def split_batches(ids: Sequence[int], most: int, least_batches: int) -> list[list[int]]:
    """``ids`` in consecutive batches of near-equal size: at most ``most`` ids each, and at least
    ``least_batches`` batches when there are that many ids, but no batch of fewer than a
    quarter of ``most`` made for the spread.

    A batch is polled by one worker process, and CPU-bound work within it (parsing, storing
    50 new items a feed) runs one feed after another: 100 due feeds in one batch kept one
    process busy for seconds while the others idled. Equal sizes: 101 feeds are 51 + 50, not
    100 + 1. The floor on the size: a batch has a fixed cost (a message, the batch's reads, a
    commit), and with a tick every 0.5 s a busy service claims a few feeds a tick. Split four
    ways, they cost 20 % more CPU per stored article (round 10 in docs/performance-history.md); the next
    tick's batch goes to the next free process anyway.
    """
    if not ids:
        return []
    least_size = max(1, most // 4)
    spread = min(least_batches, max(1, len(ids) // least_size))
    count = max(-(-len(ids) // most), spread)
    size, extra = divmod(len(ids), count)
    bounds = [k * size + min(k, extra) for k in range(count + 1)]
    return [list(ids[bounds[k] : bounds[k + 1]]) for k in range(count)]


def poll_batches(sizes: Mapping[int, int], most: int, most_bytes: int, least_batches: int) -> list[list[int]]:
    """A tick's due feeds (``sizes``: each id, in order, with its last body's bytes) in poll
    messages of at most ``most`` feeds and ``most_bytes``: ``split_batches``' near-equal batches,
    each cut by bytes where it passes the bound, unless cutting by both bounds at once makes
    fewer messages (each full but the last) and still at least the spread ``split_batches``
    makes of a few due feeds. A feed larger than ``most_bytes`` goes alone.

    Cut by count first and by bytes second, every batch past the byte bound went as two
    messages, a full one and the rest: 200 feeds of the shared corpus's sizes (60 KB on average)
    as ~140 and ~60 at the defaults, and the benchmark's 304 feeds before their first body
    (``UNKNOWN_BODY_BYTES``) as 143 and 57, where a message has a fixed cost of its own (round
    71 in docs/performance-history.md). Never more messages than that cut: no cut into
    consecutive runs within both bounds has fewer than the one by both at once."""
    ids = list(sizes)
    even = split_batches(ids, most, least_batches)
    cut = [part for batch in even for part in cut_by_bytes(batch, [sizes[f] for f in batch], most_bytes)]
    if len(cut) == len(even):  # no batch past the byte bound
        return even
    runs = cut_by_bytes(ids, [sizes[f] for f in ids], most_bytes, most_items=most)
    return runs if len(even) <= len(runs) < len(cut) else cut


#: The share of a poll task's soft time limit that the pacing of one host's requests may take.
ORIGIN_PACING_SHARE = 0.5


def origin_most(s: Settings) -> int | None:
    """The most feeds of one origin a poll batch takes: as many as the host's pacing
    (``per_host_min_gap_seconds``) lets start within ``ORIGIN_PACING_SHARE`` of the task's soft
    time limit, 121 at the defaults (0.5 s apart, 120 s); None without pacing.

    A worker process starts an origin's requests one gap apart, so a batch of n feeds of one
    origin spends (n - 1) gaps before its last fetch starts, and the task then still needs that
    fetch (up to ``fetch_deadline``) and the batch's parse and store. Batches of 200 feeds of one
    origin would spend 100 s of a 120 s limit waiting (a busy origin's due feeds go together:
    ``_by_origin``); the rest of the limit is left to the fetch, the parse and the store."""
    gap = s.per_host_min_gap_seconds
    if gap <= 0:
        return None
    return paced_starts(s.task_soft_time_limit * ORIGIN_PACING_SHARE, gap)


def cut_by_origin(items: Sequence[T], origins: Sequence[str | None], most: int | None) -> list[list[T]]:
    """``items`` in consecutive runs with at most ``most`` of any one origin (None: no bound);
    an item without an origin counts towards none. The tick sorts its feeds by origin, so an
    origin's feeds are consecutive and a run ends where the next of them would pass ``most``."""
    if most is None:
        return [list(items)] if items else []
    runs: list[list[T]] = []
    run: list[T] = []
    counts: Counter[str] = Counter()
    for item, origin in zip(items, origins, strict=True):
        if origin is not None and counts[origin] >= most:
            runs.append(run)
            run, counts = [], Counter()
        run.append(item)
        if origin is not None:
            counts[origin] += 1
    if run:
        runs.append(run)
    return runs


#: What the tick counts for a feed with no ``body_bytes`` yet (never fetched with a 200): about a
#: real feed (the shared corpus's 26 feeds: 60 KB on average, 31 KB the median, 259 KB the
#: largest), so that a tick of new feeds still sends full batches (128 feeds under the default
#: 8 MiB: ``poll_batch_bytes`` cuts the default 200).
UNKNOWN_BODY_BYTES = 64 << 10


def cut_by_bytes(
    items: Sequence[T], sizes: Sequence[int], most: int, most_items: int | None = None
) -> list[list[T]]:
    """``items`` in consecutive runs whose ``sizes`` add up to ``most`` at most (and of at most
    ``most_items`` items); an item larger than ``most`` is a run of its own.

    A poll batch holds its feeds' bodies, parsed entries and drafts together, so
    ``poll_batch_size`` alone bounds a worker's memory only for feeds of a known size: one batch
    of 40 feeds of 1.2 MB grew a worker by 132 MB (``benchmarks/batch_memory.py``, round 24 in
    docs/performance.md). The tick cuts its batches by the feeds' last sizes (28 MB there), and a
    worker cuts what it fetched by the real ones (a new feed, a feed that grew) into parts stored
    one by one; the bodies past the bound wait in temporary files meanwhile (``fetch_all``'s
    ``hold_bytes``: 26 MB with 100 such feeds, 131 MB when the fetch held them all).
    """
    runs: list[list[T]] = []
    run: list[T] = []
    total = 0
    for item, size in zip(items, sizes, strict=True):
        if run and (total + size > most or (most_items is not None and len(run) >= most_items)):
            runs.append(run)
            run, total = [], 0
        run.append(item)
        total += size
    if run:
        runs.append(run)
    return runs


def publish_alerts(ctx: Context, alert_ids: Sequence[int]) -> int:
    """Publish the alerts, ``alert_batch_size`` ids a message; mark the ones published as queued.
    Returns that count."""
    if not alert_ids or ctx.publish_alert is None:
        return 0
    published: list[int] = []
    size = ctx.settings.alert_batch_size
    for k in range(0, len(alert_ids), size):
        chunk = list(alert_ids[k : k + size])
        try:
            ctx.publish_alert(chunk)
        except Exception as exc:  # noqa: BLE001 - the outbox rows stay pending; the tick retries
            log.warning("alert.publish_failed", alert_ids=chunk, error=str(exc))
            break
        published.extend(chunk)
    if published:
        with session_scope(ctx.settings) as session:
            store.mark_alerts_queued(session, published, ctx.clock())
    return len(published)


# --- poll --------------------------------------------------------------------------------------


@dataclass
class PollReport:
    feed_id: int
    url: str
    outcome: str  # ok | not_modified | unchanged | error
    http_status: int | None = None
    bytes: int = 0
    entries: int = 0
    kept: int = 0  # of the entries, items not parsed: their bytes were recorded (feedwatch.splice)
    new: int = 0
    flagged: int = 0
    duration_ms: int = 0
    error_class: str | None = None
    error: str | None = None
    alert_ids: list[int] = field(default_factory=list)
    next_check: str | None = None
    candidates: int = 0  # sent to the full-text stage
    extract_ids: list[int] = field(default_factory=list)


def poll_feeds(ctx: Context, feed_ids: Sequence[int]) -> list[PollReport]:
    """Poll a batch of feeds: fetch concurrently, parse each, store the batch in ONE transaction.

    One commit per batch, not per feed: round trips and commits, not parsing, capped a worker
    at a few hundred mostly-304 feeds a second. Parsing happens before the transaction opens, so
    SQLite's single writer lock is held only for the writes. If the batch write fails for a
    reason other than the database itself, each feed is written in its own transaction, so one
    bad feed cannot take the batch down. Alerts are published after the commit.

    Changed bodies that add up to more than ``poll_part_bytes`` are parsed and stored in parts
    (``cut_by_bytes``), each part as above, one after another: a part's parsed entries and drafts
    are let go before the next part is parsed. A 304 and a body of the same bytes as last time
    parse nothing and count nothing. The fetch holds no more than ``poll_batch_bytes`` of bodies
    in memory: the bodies past it wait in temporary files, each read back as its feed is parsed.
    """
    with read_scope(ctx.settings) as session:
        # In id order: every batch then locks its feed rows in the same order (no deadlocks).
        # The same SELECT reads the state the outcomes change: no second read after the fetch.
        loaded = [(target, row) for target, row in feedstate.load(session, feed_ids) if target.enabled]
    feeds = [target for target, _ in loaded]
    rows = {row.id: row for _, row in loaded}
    requests = [feedstate.fetch_request(f, ctx.clock(), ctx.rng) for f in feeds]
    started = time.monotonic()
    # The bodies past the bound wait in temporary files until their part is parsed: a batch of
    # new feeds (their sizes unknown to the tick) may bring far more than the bound.
    results = fetch_all(
        requests, ctx.fetch_config, ctx.address_policy, hold_bytes=ctx.settings.poll_batch_bytes
    )
    fetch_ms = int((time.monotonic() - started) * 1000)
    # The bodies in memory are hashed here, once (the parse is handed the hash): a body of the
    # same bytes as last time parses nothing, so it weighs nothing in a part (a spilled body is
    # not read back to find out).
    hashes = [
        body_hash(r.body) if isinstance(r, FetchResult) and not r.not_modified and r.spilled is None else None
        for r in results
    ]
    fetched = list(zip(feeds, results, hashes, strict=True))
    spilled = sum(1 for r in results if isinstance(r, FetchResult) and r.spilled is not None)
    sizes = [_parsed_bytes(*polled) for polled in fetched]
    parts = cut_by_bytes(fetched, sizes, ctx.settings.poll_part_bytes)
    del results, fetched  # each part's bodies go once that part is parsed (``_poll_part`` empties it)
    reports: list[PollReport] = []
    for part in parts:
        reports += _poll_part(ctx, part, rows)
    outcomes = Counter(r.outcome for r in reports)
    log.info(
        "poll.batch",
        feeds=len(feeds),
        fetch_ms=fetch_ms,
        store_ms=int((time.monotonic() - started) * 1000) - fetch_ms,
        **({"parts": len(parts)} if len(parts) > 1 else {}),
        **({"spilled": spilled} if spilled else {}),  # bodies that waited in temporary files
        **outcomes,
    )
    return reports


def _parsed_bytes(feed: store.PollTarget, result: FetchResult | FetchError, hashed: str | None) -> int:
    """The bytes a poll of ``feed`` will parse: none for a failure, a 304 or the same bytes as
    last time (``hashed``: its body's hash, None for a body in a temporary file)."""
    if isinstance(result, FetchError) or result.not_modified:
        return 0
    return 0 if hashed is not None and hashed == feed.body_hash else result.size


def _poll_part(
    ctx: Context,
    part: list[tuple[store.PollTarget, FetchResult | FetchError, str | None]],
    rows: Mapping[int, feedstate.FeedRow],
) -> list[PollReport]:
    """Parse, normalize and store these fetched feeds (each with its body's hash when it was
    taken: :func:`poll_feeds`) in one transaction, then count, log and publish what they stored.
    ``part`` is emptied once parsed: it held the bodies."""
    # No feed id bound to the log context around each feed's steps: the parse and normalize
    # log nothing, and a step's failure is logged with its feed id (``_guarded``). Binding and
    # unbinding it for every feed was ~2 % of a feeds worker while polling (round 19).
    polls = [_prepare(ctx, feed, result, hashed) for feed, result, hashed in part]
    part.clear()  # the bodies: parsed now, and a batch held them all until it ended
    stored = _stored_items(ctx, polls)
    for poll in polls:
        if poll.parsed is not None:
            _guarded(poll, partial(_normalize, poll, stored.seen))
    _detect_languages(polls)
    _store_batch(ctx, polls, {p.feed.id: rows[p.feed.id] for p in polls}, stored)
    reports = [p.report for p in polls]
    del polls  # the parsed entries and drafts; the reports say what was stored
    metrics.observe_polls(reports)
    quiet_lines = logging.getLogger(_LOG_NAME).isEnabledFor(logging.DEBUG)
    for report in reports:
        # A quiet poll (304, or the same bytes) is a DEBUG line: at a thousand polls a second
        # they would be most of the log; ``poll.batch`` counts them.
        quiet = report.outcome in ("not_modified", "unchanged")
        if quiet and not quiet_lines:
            continue
        fields = {k: v for k, v in vars(report).items() if k not in ("alert_ids", "url", "extract_ids")}
        (log.debug if quiet else log.info)("feed.polled", url=report.url, **fields)
    publish_alerts(ctx, [a for r in reports for a in r.alert_ids])
    publish_articles(ctx, [a for r in reports for a in r.extract_ids])
    return reports


@dataclass
class _Poll:
    """One feed of a batch between its fetch and its write: what to store, or the failure."""

    feed: store.PollTarget
    report: PollReport
    now: datetime
    result: FetchResult | None = None
    body_hash: str | None = None
    parsed: ParsedFeed | None = None
    keys: list[str | None] = field(default_factory=list)  # of parsed.entries, where the key is known
    # The new entries' drafts with their language hints; :func:`_detect_languages` sets the languages.
    drafted: list[Undetected] = field(default_factory=list)
    retry_after: float | None = None

    @property
    def drafts(self) -> list[ArticleDraft]:
        return [draft for draft, _ in self.drafted]

    def fail(self, error_class: str, message: str, status: int | None = None) -> None:
        self.report.outcome, self.report.error_class, self.report.error = "error", error_class, message
        self.report.http_status = status or self.report.http_status
        self.report.alert_ids, self.report.extract_ids = [], []


def _prepare(
    ctx: Context, feed: store.PollTarget, result: FetchResult | FetchError, hashed: str | None
) -> _Poll:
    """The pure part of a poll, before any write: skip 304s and unchanged bodies, else parse.
    ``hashed``: the body's hash when the caller took it already."""
    report = PollReport(feed_id=feed.id, url=feed.url, outcome="ok", duration_ms=int(result.elapsed * 1000))
    poll = _Poll(feed, report, ctx.clock())
    _guarded(poll, partial(_parse, ctx, poll, result, hashed))
    return poll


def _parse(ctx: Context, poll: _Poll, result: FetchResult | FetchError, hashed: str | None) -> None:
    if isinstance(result, FetchError):
        raise result
    result = result.loaded()  # a body that waited in a temporary file (``poll_feeds``)
    report = poll.report
    report.http_status, report.bytes = result.status, len(result.body)
    # Only this step reads the body: the poll keeps the rest of the answer (the batch write does).
    poll.result = replace(result, body=b"") if result.body else result
    if result.not_modified:
        report.outcome = "not_modified"
        return
    poll.body_hash = hashed or body_hash(result.body)
    if poll.body_hash == poll.feed.body_hash:  # the same bytes as last time: nothing to parse
        report.outcome = "unchanged"
        return
    stored = known.predicate(poll.feed.entry_fingerprints)
    poll.parsed = parse_feed(
        result.body, headers=result.headers, url=result.url, known=stored, spans=poll.feed.item_spans
    )


def _guarded(poll: _Poll, step: Callable[[], None]) -> None:
    """Run one pure step of a feed's poll; its failure becomes this feed's classified failure."""
    try:
        step()
    except (FetchError, ParseError) as exc:
        poll.retry_after = getattr(exc, "retry_after", None)
        poll.fail(exc.error_class, exc.message, getattr(exc, "status", None))
    except Exception as exc:
        if _fatal(exc):
            raise
        # A bug or a feed that breaks a stage must not take the rest of the batch down with it.
        log.exception("feed.internal_error", feed_id=poll.report.feed_id)
        poll.fail("internal", f"{type(exc).__name__}: {exc}")


def body_hash(body: bytes) -> str:
    """What ``Feed.body_hash`` holds: a 128-bit xxh3 of the bytes, as hex. It only says "the same
    bytes as last time" (a collision would skip one changed body until the feed changes again:
    ~2^-128 a poll). SHA-256 until round 16: 21 against 0.65 µs for a 40 KB body, on every 200
    (docs/performance-history.md, round 16); a row hashed the old way looks changed once."""
    return xxhash.xxh3_128_hexdigest(body)


def _stored_items(ctx: Context, polls: Sequence[_Poll]) -> store.StoredKeys:
    """Which parsed entries are stored already, among those their feed's row does not list as
    known (``feedwatch.known``): their articles' ids, and the feeds that have seen them. One
    query a batch; :func:`store_batch` takes the ids from it."""
    for p in polls:
        if p.parsed is not None and p.result is not None:
            url = p.result.url
            p.keys = [None if e.known else entry_identity_key(e, feed_url=url) for e in p.parsed.entries]
    keys = {key for p in polls for key in p.keys if key}
    if not keys:
        return store.NO_KEYS
    with read_scope(ctx.settings) as session:
        return store.stored_keys(session, list(keys))


def _normalize(poll: _Poll, seen: frozenset[tuple[int, str]]) -> None:
    """Normalize the entries this feed has not stored yet, but for their languages
    (:func:`_detect_languages`). Normalizing (language detection above all) cost more than
    parsing; an entry seen before in this feed is stored already, with its sighting, matches and
    alert, so skipping it changes nothing but the time spent."""
    assert poll.parsed is not None and poll.result is not None
    feed_id, url = poll.report.feed_id, poll.result.url
    fresh = [
        e
        for e, key in zip(poll.parsed.entries, poll.keys, strict=True)
        if not e.known and (feed_id, key) not in seen
    ]
    unseen = replace(poll.parsed, entries=tuple(fresh))
    poll.drafted = draft_feed(
        unseen, feed_url=url, configured_language=poll.feed.language, fetched_at=poll.now
    )
    poll.report.kept = len(poll.parsed.kept)
    poll.report.entries = poll.report.kept + len(poll.parsed.entries) - len(fresh) + len(poll.drafted)
    # The raw texts live on in the drafts; the batch write reads only identities and dates
    # (fingerprints, the schedule). A batch of 100 feeds of 50 new items held both until it ended.
    entries = tuple(e if e.known else e.without_texts() for e in poll.parsed.entries)
    poll.parsed = replace(poll.parsed, entries=entries)


def _detect_languages(polls: Sequence[_Poll]) -> None:
    """The languages of every feed's new drafts, together (``set_languages``: 64 drafts a call of
    the model). A changed feed of the steady mix brings two: with a call a feed, normalizing it
    cost 1.5x what it costs with the batch's (round 31 in docs/performance-history.md). If
    detection fails, each feed is detected alone, so only the feed that breaks it fails."""
    waiting = [p for p in polls if p.drafted and p.report.outcome != "error"]
    if not waiting:
        return
    try:
        set_languages([pair for p in waiting for pair in p.drafted])
    except Exception as exc:
        if _fatal(exc):
            raise
        log.warning("poll.languages_failed", feeds=len(waiting), error=f"{type(exc).__name__}: {exc}")
        for poll in waiting:
            _guarded(poll, partial(set_languages, poll.drafted))


#: PostgreSQL's SQLSTATE for a transaction chosen as a deadlock victim.
DEADLOCK = "40P01"


def _store_batch(
    ctx: Context, polls: Sequence[_Poll], rows: Mapping[int, feedstate.FeedRow], stored: store.StoredKeys
) -> None:
    """Every feed's writes in one transaction; on a non-database failure, one transaction each
    (which look every key up again: nothing of the failed attempt is trusted)."""
    if not polls:
        return
    try:
        # Each feed's state changes its plain copy (read before the fetch), and the changed
        # columns are written when the block ends (store.update_feeds, rows in id order), after
        # the articles, matches and alerts (Core statements too).
        with session_scope(ctx.settings) as session, feedstate.batch(session, rows):
            _write(ctx, session, polls, stored)
        return
    except OperationalError as exc:
        # Two batches storing the same articles in opposite orders: PostgreSQL kills one. Its
        # feeds are written one transaction each, which holds far fewer locks at a time.
        if getattr(exc.orig, "sqlstate", None) != DEADLOCK:
            raise
        log.warning("poll.batch_deadlock", feeds=len(polls))
    except Exception as exc:
        if _fatal(exc):
            raise  # the database is down or the process is in trouble: the task fails, the claims expire
        log.warning("poll.batch_write_failed", feeds=len(polls), error=f"{type(exc).__name__}: {exc}")
    for poll in polls:
        _store_one(ctx, poll)


def _store_one(ctx: Context, poll: _Poll) -> None:
    try:
        with session_scope(ctx.settings) as session:
            _write(ctx, session, [poll], store.NO_KEYS)
        return
    except Exception as exc:
        if _fatal(exc):
            raise
        log.exception("feed.internal_error", feed_id=poll.report.feed_id)
        poll.fail("internal", f"{type(exc).__name__}: {exc}")
    with session_scope(ctx.settings) as session:
        _write(ctx, session, [poll], store.NO_KEYS)


#: A poll batch's commit does not wait for its WAL to reach disk (``poll_synchronous_commit``).
_NO_COMMIT_WAIT = text("SET LOCAL synchronous_commit = off")


def _write(ctx: Context, session: Session, polls: Sequence[_Poll], stored: store.StoredKeys) -> None:
    """The polls' writes: the new articles of every feed that parsed, with their matches and
    alert rows (one :func:`store_batch`, which takes the ids of the keys ``stored`` found),
    then each feed's state, or its failure.

    On PostgreSQL the commit does not wait for the disk unless ``poll_synchronous_commit``; why
    that loses nothing a channel was sent is in docs/decisions.md ("A poll batch commits without
    waiting for the disk")."""
    if not ctx.settings.poll_synchronous_commit and session.get_bind().dialect.name == "postgresql":
        session.execute(_NO_COMMIT_WAIT)
    parsed = [p for p in polls if p.report.outcome != "error" and p.parsed is not None]
    if parsed:
        feeds = [FeedDrafts(p.report.feed_id, p.drafts, p.report, p.feed.full_text) for p in parsed]
        story = stories.StoryPolicy.from_settings(ctx.settings)
        store_batch(session, ctx.rulebook, feeds, parsed[0].now, story, stored)
    for poll in polls:
        report, feed_id = poll.report, poll.report.feed_id
        if report.outcome == "error":
            assert report.error_class is not None
            feedstate.record_failure(
                session,
                feed_id,
                report.error_class,
                report.error or "",
                poll.retry_after,
                report,
                poll.now,
                ctx.rng,
            )
            continue
        assert poll.result is not None
        feedstate.record_success(
            session, feed_id, poll.result, poll.body_hash, report, poll.now, ctx.rng, poll.parsed
        )


class Assessed(NamedTuple):
    """What the rules make of a batch's new drafts (:func:`match_drafts`)."""

    matched: dict[str, list[TopicMatch]]  # identity key → its matches, for the drafts that match
    candidates: set[str]  # the drafts that match nothing but are full-text candidates
    folded: dict[str, str]  # a matched draft's field → its folded words, as the rules cut it


def match_drafts(rulebook: Rulebook, drafts: Sequence[ArticleDraft]) -> Assessed:
    """Rule matches per identity key, for the drafts that match anything; and the keys of the
    drafts that match nothing but are full-text candidates (``Rulebook.candidate``). One scan
    of each draft's text answers both. The words the rules cut a matched draft's fields into
    are kept for its story signature (``stories.signatures``), which reads the same words."""
    matched: dict[str, list[TopicMatch]] = {}
    candidates: set[str] = set()
    folded: dict[str, str] = {}
    cut: dict[str, str] = {}

    def split(text: str) -> Words:
        words = split_words(text)
        cut[text] = words.folded
        return words

    for draft in drafts:
        matches, candidate = rulebook.assess(draft.title, draft.text, split)
        if matches:
            matched[draft.identity_key] = matches
            folded.update(cut)
        elif candidate:
            candidates.add(draft.identity_key)
        cut.clear()
    return Assessed(matched, candidates, folded)


@dataclass
class FeedDrafts:
    """One feed's part of a :func:`store_batch`: its new drafts, and the report it fills in."""

    feed_id: int
    drafts: Sequence[ArticleDraft]
    report: PollReport
    full_text: bool = False  # the feed asks for every new article's full text


def store_drafts(
    session: Session,
    rulebook: Rulebook,
    feed_id: int,
    drafts: Sequence[ArticleDraft],
    now: datetime,
    report: PollReport,
    story: stories.StoryPolicy | None = None,
    full_text: bool = False,
) -> list[int]:
    """One feed's :func:`store_batch`; returns its new alert ids."""
    store_batch(session, rulebook, [FeedDrafts(feed_id, drafts, report, full_text)], now, story)
    return report.alert_ids


def store_batch(
    session: Session,
    rulebook: Rulebook,
    feeds: Sequence[FeedDrafts],
    now: datetime,
    story: stories.StoryPolicy | None = None,
    looked_up: store.StoredKeys = store.NO_KEYS,
) -> None:
    """Store the feeds' new articles with their sightings, matches and alert rows, and fill in
    each feed's report (``new``, ``flagged``, ``alert_ids``, ``extract_ids``, ``candidates``).

    ``looked_up``: what :func:`store.stored_keys` found of the drafts' keys before they were
    normalized (a poll batch asks it once); only the keys it was not asked about are looked up
    here. A key it found is stored still: articles are never deleted (a retry after a failed
    batch looks every key up again). A key it did not find may have been stored since by another
    transaction: then the articles' ``COPY`` fails and they go by ``INSERT … ON CONFLICT``, as
    when that happens between this lookup and the insert.

    One lookup, one insert and one insert of sightings for the whole batch, however many feeds
    it holds (a statement cost the worker ~0.1 ms however few its rows); inserts go in chunks of
    ``store.INSERT_CHUNK`` rows, which bounds the batch's peak memory. An article is stored
    once, by the first feed that shows it (its ``feed_id``), and every other feed that shows it
    gets a sighting.
    Articles and sightings are inserted in key order, so two batches storing the same articles
    take their locks in the same order. A flagged article that is a copy of a story alerted
    within the window (feedwatch.stories) joins that alert as "also reported by" and gets no
    alert of its own.
    """
    story = story or stories.StoryPolicy()
    owner: dict[str, tuple[FeedDrafts, ArticleDraft]] = {}
    for feed in feeds:
        for draft in feed.drafts:
            owner.setdefault(draft.identity_key, (feed, draft))
    stored = {key: looked_up.ids[key] for key in owner if key in looked_up.ids}
    stored |= store.ids_by_key(session, [key for key in owner if key not in looked_up.asked])
    new = sorted(key for key in owner if key not in stored)
    assessed = match_drafts(rulebook, [owner[key][1] for key in new])
    inserted = store.insert_articles(
        session, [(owner[key][0].feed_id, owner[key][1]) for key in new], now, set(assessed.matched)
    )
    # A draft another transaction stored between the two statements was not inserted here.
    ids = {**stored, **inserted, **store.ids_by_key(session, [k for k in new if k not in inserted])}
    # The feed that stored an article has seen it (``Article.feed_id``); every other feed that
    # shows it gets a sighting row.
    sightings = {
        (ids[d.identity_key], f.feed_id)
        for f in feeds
        for d in f.drafts
        if d.identity_key in ids and not (d.identity_key in inserted and owner[d.identity_key][0] is f)
    }
    store.add_sightings(session, sorted(sightings), now)
    mine = {
        feed.feed_id: [d for d in feed.drafts if owner[d.identity_key][1] is d and d.identity_key in inserted]
        for feed in feeds
    }
    alert_ids = _alert(session, [(f.feed_id, mine[f.feed_id]) for f in feeds], inserted, assessed, now, story)
    candidates: list[int] = []
    for feed in feeds:
        report = feed.report
        report.alert_ids = alert_ids[feed.feed_id]
        report.extract_ids = _full_text_candidates(
            mine[feed.feed_id], inserted, assessed.candidates, feed.full_text
        )
        report.new, report.flagged = len(mine[feed.feed_id]), len(report.alert_ids)
        report.candidates = len(report.extract_ids)
        candidates.extend(report.extract_ids)
    store.request_full_text(session, candidates, now)


def _alert(
    session: Session,
    feeds: Sequence[tuple[int, Sequence[ArticleDraft]]],
    inserted: dict[str, int],
    assessed: Assessed,
    now: datetime,
    story: stories.StoryPolicy,
) -> dict[int, list[int]]:
    """The matches of the feeds' flagged new articles, and an alert for each that is no copy of
    a story alerted within the window or started earlier in the batch (``stories.settle``);
    returns each feed's new alert ids."""
    matched = assessed.matched
    drafts = [(feed_id, d) for feed_id, mine in feeds for d in mine if d.identity_key in matched]
    store.insert_matches(
        session, [(inserted[d.identity_key], matched[d.identity_key]) for _, d in drafts], now, stage="feed"
    )
    signatures = stories.signatures([(d.title, d.text) for _, d in drafts], assessed.folded)
    flagged = [
        stories.Flagged(inserted[d.identity_key], feed_id, [m.topic for m in matched[d.identity_key]], sig)
        for (feed_id, d), sig in zip(drafts, signatures, strict=True)
    ]
    alert_ids: dict[int, list[int]] = {feed_id: [] for feed_id, _ in feeds}
    for f, alert_id in zip(flagged, stories.settle(session, flagged, now, story), strict=True):
        if alert_id is not None:
            alert_ids[f.feed_id].append(alert_id)
    return alert_ids


# --- one-shot ingest -----------------------------------------------------------------------------


@dataclass
class IngestItem:
    title: str
    url: str | None
    published_at: str
    language: str | None
    new: bool
    topics: list[dict[str, Any]]


@dataclass
class IngestReport:
    source: str
    ok: bool
    error_class: str | None = None
    error: str | None = None
    entries: int = 0
    new: int = 0
    flagged: int = 0
    items: list[IngestItem] = field(default_factory=list)
    alert_ids: list[int] = field(default_factory=list)


def _read_source(ctx: Context, source: str) -> tuple[bytes, dict[str, str], str]:
    if source.startswith(("http://", "https://")):
        result = fetch_one(FetchRequest(url=source), ctx.fetch_config, ctx.address_policy)
        return result.body, result.headers, result.url
    path = Path(source)
    return path.read_bytes(), {}, path.resolve().as_uri()


def ingest(ctx: Context, source: str, dry_run: bool) -> IngestReport:
    """fetch (or read) → parse → normalize → match (→ store unless ``dry_run``) one source."""
    report = IngestReport(source=source, ok=True)
    now = ctx.clock()
    try:
        body, headers, url = _read_source(ctx, source)
        parsed = parse_feed(body, headers=headers, url=url)
    except (FetchError, ParseError) as exc:
        report.ok, report.error_class, report.error = False, exc.error_class, exc.message
        return report
    except OSError as exc:
        report.ok, report.error_class, report.error = False, "io", str(exc)
        return report
    drafts = normalize_feed(parsed, feed_url=url, configured_language=None, fetched_at=now)
    matched = match_drafts(ctx.rulebook, drafts).matched
    report.entries = len(drafts)
    new_keys = {d.identity_key for d in drafts}
    if not dry_run:
        with session_scope(ctx.settings) as session:
            feed = store.get_or_create_adhoc_feed(session, source, now)
            assert feed.id is not None
            poll = PollReport(feed_id=feed.id, url=url, outcome="ok")
            new_keys -= store.ids_by_key(session, list(new_keys)).keys()
            story = stories.StoryPolicy.from_settings(ctx.settings)
            report.alert_ids = store_drafts(session, ctx.rulebook, feed.id, drafts, now, poll, story)
        publish_alerts(ctx, report.alert_ids)
    for draft in drafts:
        matches = matched.get(draft.identity_key, [])
        report.items.append(
            IngestItem(
                title=draft.title,
                url=draft.url,
                published_at=draft.published_at.isoformat(),
                language=draft.language,
                new=draft.identity_key in new_keys,
                topics=[
                    {
                        "topic": m.topic,
                        "score": round(m.score, 3),
                        "terms": m.terms,
                        "snippet": m.snippet,
                    }
                    for m in matches
                ],
            )
        )
    report.new = sum(1 for i in report.items if i.new)
    report.flagged = sum(1 for i in report.items if i.topics and (dry_run or i.new))
    return report


# --- full text (second stage, queue ``articles``) --------------------------------------------------
#
# A candidate (new article with a topic's anchor term in title or teaser, or any new article of a
# ``full_text = true`` feed, never one already alerted at the feed stage unless its feed asks for
# full text) is marked pending in the poll's transaction; its id is published after the commit.
# ``process_articles`` fetches the pages through the same guarded fetcher (page cap
# ``article_max_bytes``), extracts the story (feedwatch.extract), detects its language, runs the
# rules on title + full text and stores the outcome. Topics new at this stage are stored as
# ``Match.stage = "full_text"``; an article with no alert yet gets one (same outbox, same story
# de-duplication); an article already alerted is never alerted again. The tick re-sends
# candidates whose message was lost and fails as ``crash`` those whose runs keep dying.


def _full_text_candidates(
    new: Sequence[ArticleDraft], inserted: dict[str, int], maybe: set[str], full_text: bool
) -> list[int]:
    """The ids of a feed's inserted new articles that are full-text candidates (the caller
    marks them): all of them with a URL when the feed asks for full text, else those that
    matched nothing but might (``maybe``, from :func:`match_drafts`)."""
    return [inserted[d.identity_key] for d in new if d.url and (full_text or d.identity_key in maybe)]


def publish_articles(ctx: Context, article_ids: Sequence[int]) -> int:
    """Publish fetch_article messages in batches; returns how many ids went out. A failure
    leaves the rest pending: the tick re-sends them after ``article_requeue_seconds``."""
    if not article_ids or ctx.publish_article is None:
        return 0
    size, sent = ctx.settings.article_batch_size, 0
    for i in range(0, len(article_ids), size):
        batch = list(article_ids[i : i + size])
        try:
            ctx.publish_article(batch)
        except Exception as exc:  # noqa: BLE001 - the rows stay pending; the tick re-sends
            log.warning("article.publish_failed", articles=len(batch), error=str(exc))
            break
        sent += len(batch)
    return sent


def requeue_full_text(ctx: Context, now: datetime) -> int:
    """Re-send candidates whose message may be lost; fail as ``crash`` those re-sent too often."""
    older = timedelta(seconds=ctx.settings.article_requeue_seconds)
    with session_scope(ctx.settings) as session:
        claimed = store.claim_lost_full_text(session, now, older, limit=1000)
        crashed = {article_id: "crash" for article_id, attempts in claimed if attempts > CRASH_LIMIT}
        store.fail_full_text(session, crashed, now)
        for article_id, attempts in claimed:
            if article_id in crashed:
                log.warning("article.crashed", article_id=article_id, attempts=attempts)
    return publish_articles(ctx, [a for a, attempts in claimed if attempts <= CRASH_LIMIT])


@dataclass
class ArticleReport:
    article_id: int
    url: str
    outcome: str  # ok | failed | skipped (finished by another delivery of the message)
    http_status: int | None = None
    bytes: int = 0
    chars: int = 0
    method: str | None = None  # trafilatura | fallback
    language: str | None = None
    new_topics: list[str] = field(default_factory=list)
    alert_id: int | None = None
    error_class: str | None = None
    error: str | None = None
    fetch_ms: int = 0
    extract_ms: int = 0


def article_fetch_config(settings: Settings) -> FetchConfig:
    """The feed fetcher's limits, with the article page cap."""
    return replace(FetchConfig.from_settings(settings), max_bytes=settings.article_max_bytes)


def process_articles(ctx: Context, article_ids: Sequence[int]) -> list[ArticleReport]:
    """The full-text stage for a batch of candidates: fetch concurrently; record the failed
    fetches together (one transaction); then one by one extract, detect the language, match,
    store, and publish any alert after its commit."""
    with session_scope(ctx.settings) as session:
        articles = [a for a in store.pending_full_text(session, article_ids) if a.url]
    requests = [FetchRequest(url=a.url or "", key=a.id) for a in articles]
    results = fetch_all(requests, article_fetch_config(ctx.settings), ctx.address_policy)
    fetched = list(zip(articles, results, strict=True))
    failed = iter(_fetch_failures(ctx, [(a, r) for a, r in fetched if isinstance(r, FetchError)]))
    reports: list[ArticleReport] = []
    for article, result in fetched:
        if isinstance(result, FetchError):
            reports.append(next(failed))  # in the same order
            continue
        with structlog.contextvars.bound_contextvars(article_id=article.id):
            report = _process_article(ctx, article, result)
        reports.append(report)
        if report.alert_id is not None:
            publish_alerts(ctx, [report.alert_id])
    return reports


def _fetch_failures(ctx: Context, failed: Sequence[tuple[Article, FetchError]]) -> list[ArticleReport]:
    """The candidates whose page could not be fetched (a status, a refusal, a timeout: on real
    outlets a good share of them), recorded as failed in one transaction before any extraction
    starts; their reports, in the order given. Each committed on its own, they cost ~2.3 ms of
    the worker a candidate against ~0.95, most of it the session and the statement built for one
    row (round 28 in docs/performance-history.md)."""
    if not failed:
        return []
    errors = {article.id: error.error_class for article, error in failed if article.id is not None}
    with session_scope(ctx.settings) as session:
        done = store.fail_full_text(session, errors, ctx.clock())
    reports: list[ArticleReport] = []
    for article, error in failed:
        assert article.id is not None
        report = ArticleReport(
            article_id=article.id, url=article.url or "",
            outcome="failed" if article.id in done else "skipped",  # skipped: another delivery finished it
            http_status=error.status, error_class=error.error_class, error=error.message,
            fetch_ms=int(error.elapsed * 1000),
        )  # fmt: skip
        with structlog.contextvars.bound_contextvars(article_id=article.id):
            _log_extraction(report)
        reports.append(report)
    return reports


def _log_extraction(report: ArticleReport) -> None:
    log.info("article.extracted", **{k: v for k, v in vars(report).items() if k != "new_topics"},
             topics=report.new_topics)  # fmt: skip
    metrics.observe_extraction(report.outcome, report.error_class)


def _process_article(ctx: Context, article: Article, result: FetchResult) -> ArticleReport:
    assert article.id is not None
    s = ctx.settings
    report = ArticleReport(article_id=article.id, url=article.url or "", outcome="ok")
    report.fetch_ms = int(result.elapsed * 1000)
    started = time.monotonic()
    found: ExtractedText | None = None
    try:
        report.http_status, report.bytes = result.status, len(result.body)
        found = extract(
            result.body,
            result.url,
            content_type=result.headers.get("content-type"),
            language_hint=article.language,
            max_chars=s.article_max_bytes,
            time_limit=s.extract_time_limit,
        )
    except ExtractionError as exc:
        report.error_class, report.error = exc.error_class, exc.message
    except Exception as exc:
        if _fatal(exc):
            raise
        log.exception("article.internal_error")
        report.error_class, report.error = "internal", f"{type(exc).__name__}: {exc}"
    report.extract_ms = int((time.monotonic() - started) * 1000)
    _store_full_text(ctx, article, found, report)
    _log_extraction(report)
    return report


def _store_full_text(
    ctx: Context, article: Article, found: ExtractedText | None, report: ArticleReport
) -> None:
    assert article.id is not None
    now = ctx.clock()
    with session_scope(ctx.settings) as session:
        if found is None:
            failed = store.fail_full_text(session, {article.id: report.error_class or "internal"}, now)
            report.outcome = "failed" if failed else "skipped"
            return
        report.chars, report.method, report.language = len(found.text), found.method, found.language
        done = store.finish_full_text(
            session, article.id, now, text=found.text, language=found.language, author=found.author
        )
        if not done:
            report.outcome = "skipped"
            return
        matches = ctx.rulebook.match(article.title, found.text, found.language)
        known = store.matched_topics(session, article.id)
        new = [m for m in matches if m.topic not in known]
        report.new_topics = [m.topic for m in new]
        store.insert_matches(session, [(article.id, new)], now, stage="full_text")
        if new and not store.has_alert(session, article.id):
            report.alert_id = _full_text_alert(ctx, session, article, matches, now)


def _full_text_alert(
    ctx: Context, session: Session, article: Article, matches: Sequence[TopicMatch], now: datetime
) -> int | None:
    """The alert for an article flagged only by its full text; a copy of a story alerted within
    the window joins that alert instead (as at the feed stage)."""
    assert article.id is not None
    store.flag_article(session, article.id)
    sig = stories.signature(article.title, article.text)
    flagged = stories.Flagged(article.id, article.feed_id, [m.topic for m in matches], sig)
    return stories.settle(session, [flagged], now, stories.StoryPolicy.from_settings(ctx.settings))[0]


# --- WebSub push ---------------------------------------------------------------------------------


def ingest_pushed(ctx: Context, feed_id: int, body: bytes, headers: dict[str, str]) -> PollReport:
    """Content a WebSub hub pushed for ``feed_id`` (signature already checked, feedwatch.websub):
    the poll's stages from parse on, in one transaction, then publish. The schedule is left alone;
    the push counts in the poll history, so the publication rate still sees these items."""
    now = ctx.clock()
    with session_scope(ctx.settings) as session:
        feed = session.get(Feed, feed_id)
    report = PollReport(feed_id=feed_id, url=feed.url if feed else "", outcome="pushed", bytes=len(body))
    if feed is None or not feed.enabled:
        report.outcome, report.error_class, report.error = "error", "gone", "no such enabled feed"
        return report
    try:
        parsed = parse_feed(body, headers=headers, url=feed.url)
    except ParseError as exc:
        report.outcome, report.error_class, report.error = "error", exc.error_class, exc.message
        log.warning("feed.push_rejected", feed_id=feed_id, error_class=exc.error_class, error=exc.message)
        return report
    drafts = normalize_feed(parsed, feed_url=feed.url, configured_language=feed.language, fetched_at=now)
    report.entries = len(drafts)
    with session_scope(ctx.settings) as session:
        story = stories.StoryPolicy.from_settings(ctx.settings)
        alert_ids = store_drafts(session, ctx.rulebook, feed_id, drafts, now, report, story, feed.full_text)
        feedstate.record_push(session, feed_id, report, now, parsed)
    report.alert_ids = alert_ids
    publish_alerts(ctx, report.alert_ids)
    publish_articles(ctx, report.extract_ids)
    log.info("feed.pushed", feed_id=feed_id, entries=report.entries, new=report.new, flagged=report.flagged)
    return report
