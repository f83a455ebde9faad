"""What operators see: one status report from the database, the broker and the workers.

Each source is asked separately and in bounded time, so a dead broker still leaves the database
side visible, and a dead database still leaves the queues visible:

    db_status      beat heartbeat, feeds by state / overdue / worst, alert outbox, recent articles
    queue_status   ready / unacked / oldest-ready age per queue (Redis or the filesystem broker)
    worker_status  the workers that answer a ping, with their queues and active task counts

``collect_status`` assembles them into one JSON-ready dict (the shape ``feedwatch status --json``
prints and docs/operations.md describes); ``check_status`` turns a report into the reasons it is
unhealthy (an empty list means healthy). Celery is imported only inside ``worker_status``.
"""

from __future__ import annotations

import importlib
import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import bindparam, func, select
from sqlmodel import Session, col

from feedwatch.db import IdentityIndex, autovacuum_off, identity_index, session_scope
from feedwatch.models import Alert, AlertStatus, Article, Feed, FeedState, FullTextStatus, Heartbeat, Match
from feedwatch.settings import QUEUES, Settings
from feedwatch.timeutil import isoformat_utc, to_utc, utcnow

if TYPE_CHECKING:
    from celery import Celery

WORST_FEEDS = 10
#: ``feedwatch status`` warns once the article identity index is more than this share of
#: PostgreSQL's buffer pool, which also holds the pages of the tables' other hot parts (the
#: article heap's end, the story tables, the feed rows). At 10 million articles a 1.2 GB index
#: in a 2 GB pool (58 %) met the ingest target in each of round 67's runs; in the default
#: 128 MB pool (930 %) each new article's leaf is a read from outside it (round 66). Three
#: quarters leaves a quarter of the pool to the rest: a judgment between the two, not a line
#: measured.
IDENTITY_INDEX_POOL_SHARE = 0.75
REDIS_TIMEOUT = 2.0  # seconds, for connect and for every command

T = TypeVar("T")


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else round((now - to_utc(then)).total_seconds(), 1)


def redact_url(url: str) -> str:
    """The broker/database URL without its password."""
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url))


# --- database ----------------------------------------------------------------------------------


def beat_status(session: Session, now: datetime, settings: Settings) -> dict[str, Any]:
    beat = session.get(Heartbeat, "beat")
    age = _age(now, beat.at) if beat else None
    return {
        "last_tick_at": isoformat_utc(beat.at) if beat else None,
        "age_seconds": age,
        "late": age is None or age > settings.beat_late_seconds,
        "late_after_seconds": settings.beat_late_seconds,
        "detail": dict(beat.detail) if beat else None,
    }


def feed_status(session: Session, now: datetime, settings: Settings) -> dict[str, Any]:
    """Counts by state (a feed disabled in the configuration counts as ``disabled``), overdue
    feeds, and the worst offenders. Ad-hoc ``feedwatch ingest`` sources are left out."""
    rows = session.execute(
        select(
            col(Feed.state),
            col(Feed.enabled),
            col(Feed.tags),
            col(Feed.next_check_at),
            col(Feed.claimed_at),
        )
    ).all()
    by_state = dict.fromkeys(FeedState.ALL, 0)
    # Two ticks, and at least 2 s: a tick that waits behind busy workers is not a stuck feed.
    overdue_before = now - timedelta(seconds=max(2 * settings.tick_seconds, 2.0))
    claim_fresh_after = now - timedelta(seconds=settings.claim_lease_seconds)
    total = overdue = 0
    for state, enabled, tags, next_check_at, claimed_at in rows:
        if "ingest" in (tags or []):
            continue
        total += 1
        active = enabled and state != FeedState.DISABLED
        shown = state if active else FeedState.DISABLED
        by_state[shown] = by_state.get(shown, 0) + 1
        recently_claimed = claimed_at is not None and to_utc(claimed_at) > claim_fresh_after
        if active and to_utc(next_check_at) < overdue_before and not recently_claimed:
            overdue += 1
    worst = session.execute(
        select(Feed)
        .where(col(Feed.error_count) > 0, col(Feed.enabled))
        .order_by(col(Feed.error_count).desc(), col(Feed.id))
        .limit(WORST_FEEDS)
    ).scalars()
    return {
        "total": total,
        "by_state": by_state,
        "overdue": overdue,
        "worst": [
            {
                "id": f.id,
                "name": f.name,
                "url": f.url,
                "state": f.state,
                "error_count": f.error_count,
                "error_class": f.error_class,
                "error_message": f.error_message,
                "last_error_at": isoformat_utc(f.last_error_at),
                "last_ok_at": isoformat_utc(f.last_ok_at),
                "next_check_at": isoformat_utc(f.next_check_at),
            }
            for f in worst
        ],
    }


def alert_status(session: Session, now: datetime) -> dict[str, Any]:
    stmt = select(col(Alert.status), func.count()).group_by(col(Alert.status))
    counts: dict[str, int] = {status: int(n) for status, n in session.execute(stmt)}
    oldest = session.execute(
        select(func.min(Alert.created_at)).where(
            col(Alert.status).in_([AlertStatus.PENDING, AlertStatus.QUEUED])
        )
    ).scalar_one_or_none()
    report: dict[str, Any] = {s: int(counts.get(s, 0)) for s in AlertStatus.ALL}
    report["oldest_backlog_at"] = isoformat_utc(oldest)
    report["oldest_backlog_age_seconds"] = _age(now, oldest)
    return report


def article_status(session: Session, now: datetime) -> dict[str, Any]:
    hour, day = now - timedelta(hours=1), now - timedelta(days=1)

    def count(*where: Any) -> int:
        return int(session.execute(select(func.count()).select_from(Article).where(*where)).scalar_one())

    return {
        "last_hour": count(Article.fetched_at >= hour),
        "last_day": count(Article.fetched_at >= day),
        "flagged_last_day": count(Article.fetched_at >= day, col(Article.flagged)),
    }


#: The full-text failures since ``b_since``, by error class. Read through the candidates' index on
#: (status, extracted_at), it reads the failures of that time alone; on the status alone it read
#: every failed candidate ever stored from the table: 2.5 s of this report's 2.7 s with 10 million
#: articles (migration 0015; round 65 in docs/performance-history.md).
FAILURES_SINCE = (
    select(col(Article.full_text_error), func.count())
    .where(
        col(Article.full_text_status) == FullTextStatus.FAILED,
        col(Article.extracted_at) >= bindparam("b_since"),
    )
    .group_by(col(Article.full_text_error))
)
#: The candidates extracted since ``b_since``: the same index, the same bound. (The day's failed
#: ones are the sum of :data:`FAILURES_SINCE`'s classes, a failure's class never missing from
#: its group: NULL is a group of its own.)
OK_SINCE = select(func.count()).where(
    col(Article.full_text_status) == FullTextStatus.OK,
    col(Article.extracted_at) >= bindparam("b_since"),
)
#: The candidates waiting, and when the oldest was (last) requested.
WAITING = select(func.count(), func.min(Article.full_text_requested_at)).where(
    col(Article.full_text_status) == FullTextStatus.PENDING
)


def full_text_status(session: Session, now: datetime) -> dict[str, Any]:
    """The full-text stage: the candidates waiting and the oldest of them (a backlog, or lost
    messages the tick re-sends), and the last day's finished ones by outcome and failures by
    error class.

    Each part reads what is waiting or what finished in the last day, never the stage's whole
    history: this report is read at every scrape of ``/metrics``, and its counts of every
    candidate ever finished (``ok``, ``failed`` until round 65) read the whole index, 0.2 s at
    10 million articles and growing with them (``benchmarks/article_scale.py``). The workers'
    ``feedwatch_extractions_total`` counts every outcome."""
    since = {"b_since": now - timedelta(days=1)}
    waiting, oldest = session.execute(WAITING).one()
    failures = {str(cls): int(n) for cls, n in session.execute(FAILURES_SINCE, since)}
    return {
        FullTextStatus.PENDING: int(waiting),
        "ok_last_day": int(session.execute(OK_SINCE, since).scalar_one()),
        "failed_last_day": sum(failures.values()),
        "failed_last_day_by_class": failures,
        "oldest_pending_age_seconds": _age(now, oldest),
    }


def match_status(session: Session, now: datetime) -> dict[str, Any]:
    def by_topic(*where: Any) -> dict[str, int]:
        stmt = select(col(Match.topic), func.count()).where(*where).group_by(col(Match.topic))
        return {topic: int(n) for topic, n in session.execute(stmt)}

    return {
        "by_topic_total": by_topic(),
        "by_topic_last_day": by_topic(Match.created_at >= now - timedelta(days=1)),
    }


#: The report's parts from the database, by name, in the order they are read: :func:`db_status`
#: reads them all (``benchmarks/article_scale.py`` times each).
DB_PARTS: dict[str, Callable[[Session, datetime, Settings], dict[str, Any]]] = {
    "beat": beat_status,
    "feeds": feed_status,
    "alerts": lambda session, now, _settings: alert_status(session, now),
    "articles": lambda session, now, _settings: article_status(session, now),
    "full_text": lambda session, now, _settings: full_text_status(session, now),
    "matches": lambda session, now, _settings: match_status(session, now),
}


def db_status(session: Session, now: datetime, settings: Settings) -> dict[str, Any]:
    """Everything the database knows: beat, feeds, alerts, articles, full text, matches."""
    return {name: part(session, now, settings) for name, part in DB_PARTS.items()}


# --- broker ------------------------------------------------------------------------------------


def _empty_queues() -> dict[str, dict[str, Any]]:
    return {
        q: {
            "ready": None,
            "unacked": None,
            "oldest_ready_age_seconds": None,
            "oldest_unacked_age_seconds": None,
        }
        for q in QUEUES
    }


def _message_time(raw: bytes | str | None) -> float | None:
    """The publish time a message carries, if any (Celery's protocol 2 has none by itself: a
    ``before_task_publish`` hook may stamp ``headers["sent_at"]``, epoch seconds)."""
    if raw is None:
        return None
    try:
        message = json.loads(raw)
        headers = message.get("headers") or {}
        properties = message.get("properties") or {}
        stamp = headers.get("sent_at", properties.get("timestamp"))
        return float(stamp) if stamp is not None else None
    except (ValueError, TypeError, AttributeError):
        return None


def _filesystem_queues(settings: Settings, wall: float) -> dict[str, Any]:
    """kombu's filesystem transport: one ``<ms>_<uuid>.<queue>.msg`` file per ready message.

    A consumed message leaves the folder at once, so "unacked" is not knowable (null). The ``ms``
    prefix is a monotonic clock, so ages come from the file's mtime."""
    folder = settings.broker_dir / "queue"
    if not folder.is_dir():
        return {"ok": False, "error": f"broker folder {folder} does not exist (never started?)"}
    queues = _empty_queues()
    oldest: dict[str, float] = {}
    for q in QUEUES:
        queues[q]["ready"] = 0
    for path in folder.iterdir():
        queue = path.name.partition(".")[2].removesuffix(".msg")
        if queue not in queues or not path.name.endswith(".msg"):
            continue
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:  # consumed while we looked
            continue
        queues[queue]["ready"] += 1
        oldest[queue] = min(oldest.get(queue, mtime), mtime)
    for q, mtime in oldest.items():
        queues[q]["oldest_ready_age_seconds"] = round(max(0.0, wall - mtime), 1)
    return {"ok": True, "error": None, "queues": queues}


def _redis_queues(settings: Settings, wall: float) -> dict[str, Any]:
    """kombu's Redis transport: LPUSH to ``queue`` (and ``queue\\x06\\x16<pri>`` per priority
    step), RPOP from the tail; a delivered, unacked message sits in the ``unacked`` hash as
    ``[raw, exchange, routing_key]`` with its delivery time in the ``unacked_index`` zset."""
    import redis
    from kombu.transport.redis import PRIORITY_STEPS
    from kombu.transport.redis import Channel as RedisChannel

    def key(queue: str, pri: int) -> str:
        return f"{queue}{RedisChannel.sep}{pri}" if pri else queue

    client = redis.Redis.from_url(
        settings.broker_url,
        socket_timeout=REDIS_TIMEOUT,
        socket_connect_timeout=REDIS_TIMEOUT,
        retry_on_timeout=False,
    )
    try:
        pipe = client.pipeline(transaction=False)
        for q in QUEUES:
            for pri in PRIORITY_STEPS:
                pipe.llen(key(q, pri))
                pipe.lindex(key(q, pri), -1)  # the tail is the oldest: the next one popped
        pipe.hgetall(RedisChannel.unacked_key)
        pipe.zrange(RedisChannel.unacked_index_key, 0, -1, withscores=True)
        results = pipe.execute()
    finally:
        client.close()
    queues = _empty_queues()
    it = iter(results)
    for q in QUEUES:
        ready, stamps = 0, []
        for _ in PRIORITY_STEPS:
            ready += int(next(it))
            stamp = _message_time(next(it))
            if stamp is not None:
                stamps.append(stamp)
        queues[q]["ready"] = ready
        queues[q]["unacked"] = 0
        if stamps:
            queues[q]["oldest_ready_age_seconds"] = round(max(0.0, wall - min(stamps)), 1)
    unacked: dict[bytes, bytes] = next(it)
    delivered_at = {tag: score for tag, score in next(it)}
    for tag, payload in unacked.items():
        queue = _unacked_queue(payload)
        if queue not in queues:
            continue
        queues[queue]["unacked"] += 1
        if tag in delivered_at:
            age = round(max(0.0, wall - delivered_at[tag]), 1)
            current = queues[queue]["oldest_unacked_age_seconds"]
            queues[queue]["oldest_unacked_age_seconds"] = max(age, current or 0.0)
    return {"ok": True, "error": None, "queues": queues}


def _unacked_queue(payload: bytes) -> str | None:
    try:
        raw, exchange, routing_key = json.loads(payload)
    except (ValueError, TypeError):
        return None
    for name in (routing_key, exchange):
        if name in QUEUES:
            return str(name)
    info = (raw.get("properties") or {}).get("delivery_info") or {}
    name = info.get("routing_key")
    return str(name) if name else None


def queue_status(settings: Settings) -> dict[str, Any]:
    """``{"broker": {...}, "queues": {...}}``; never raises, answers within a few seconds."""
    broker: dict[str, Any] = {"url": redact_url(settings.broker_url), "ok": False, "error": None}
    scheme = settings.broker_url.split("://", 1)[0].lower()
    wall = time.time()
    try:
        if settings.is_filesystem_broker:
            broker["kind"] = "filesystem"
            found = _filesystem_queues(settings, wall)
        elif scheme in ("redis", "rediss", "unix"):
            broker["kind"] = "redis"
            found = _redis_queues(settings, wall)
        else:
            broker["kind"] = scheme
            found = {"ok": None, "error": f"queue depths are not implemented for {scheme}://"}
    except Exception as exc:  # noqa: BLE001 - any broker failure is reported, not raised
        found = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    broker["ok"], broker["error"] = found["ok"], found["error"]
    return {"broker": broker, "queues": found.get("queues") or _empty_queues()}


# --- workers -----------------------------------------------------------------------------------


def _bounded(fn: Callable[[], T], seconds: float) -> T:
    """``fn()`` in a daemon thread; TimeoutError if it has not answered within ``seconds``.

    A daemon thread is abandoned, not joined, so a stuck broker client never holds up the
    caller (or the interpreter's exit)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            box["error"] = exc

    thread = threading.Thread(target=run, name="feedwatch-status", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {seconds:.0f}s")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _inspect(app: Celery, timeout: float) -> list[dict[str, Any]]:
    pings = app.control.inspect(timeout=timeout).ping() or {}
    names = sorted(pings)
    if not names:
        return []
    # Ask only the workers that answered, and stop waiting once all of them have.
    targeted = app.control.inspect(timeout=timeout, destination=names, limit=len(names))
    queues = targeted.active_queues() or {}
    active = targeted.active() or {}
    return [
        {
            "name": name,
            "queues": sorted(q.get("name", "") for q in queues.get(name) or []),
            "active": len(active.get(name) or []),
        }
        for name in names
    ]


_apps: dict[str, Celery] = {}


def celery_app(settings: Settings) -> Celery:
    """A Celery app for ``settings``' broker, one per broker URL (its connection pool is
    reused by every status call and scrape of this process)."""
    app = _apps.get(settings.broker_url)
    if app is None:
        # By name, so feedwatch never imports workers at module level (layering).
        app = _apps[settings.broker_url] = importlib.import_module("workers.app").create_app(settings)
    return app


def worker_status(app: Celery | None, timeout: float) -> dict[str, Any]:
    """The workers that answer a ping within ``timeout`` seconds (broadcast over the broker)."""
    if app is None:
        # Imported here, and by name, so feedwatch never imports workers at module level.
        app = importlib.import_module("workers.app").app
    try:
        workers = _bounded(lambda: _inspect(app, timeout), 3 * timeout + 5)
    except Exception as exc:  # noqa: BLE001 - reported, never raised
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "count": 0, "answered": []}
    return {"ok": True, "error": None, "count": len(workers), "answered": workers}


# --- the report ---------------------------------------------------------------------------------


def database_warnings(session: Session, settings: Settings, index: IdentityIndex | None) -> list[str]:
    """What the database server is set to that the service does not work well with, one plain
    sentence each: not unhealthy (``check_status``), but worth an operator's look.

    PostgreSQL with autovacuum off never analyzes the tables, so every connection keeps the
    generic plans it made while they were small (round 47 in docs/performance-history.md), and
    never vacuums them, so the index entries of the feed rows' old versions pile up under the
    tick's claim (round 48), unless the service's own upkeep (``db.upkeep``) runs. A buffer pool
    the article identity index (``index``, ``db.identity_index``) has outgrown makes every new
    article cost the server more (:func:`pool_warning`)."""
    warnings = []
    if autovacuum_off(session.connection()):
        warnings.append(_upkeep_warning(settings))
    if index is not None and (warning := pool_warning(index.size_bytes, index.pool_bytes)):
        warnings.append(warning)
    return warnings


def _upkeep_warning(settings: Settings) -> str:
    if settings.db_upkeep_seconds > 0:
        return (
            "PostgreSQL's autovacuum is off: feedwatch checks its tables every"
            f" {settings.db_upkeep_seconds:g} s and vacuums and analyzes those autovacuum would"
            " (FEEDWATCH_DB_UPKEEP_SECONDS)"
        )
    return (
        "PostgreSQL's autovacuum is off and FEEDWATCH_DB_UPKEEP_SECONDS is 0: the tables are never"
        " vacuumed or analyzed (turn either on, or run VACUUM ANALYZE on a schedule)"
    )


def pool_warning(index_bytes: int, pool_bytes: int) -> str | None:
    """The warning for an article identity index past ``IDENTITY_INDEX_POOL_SHARE`` of the
    buffer pool (``shared_buffers``), or None. On 10 million articles (a 1.2 GB index) in the
    default 128 MB pool, PostgreSQL's CPU an ingested article read 56–79 µs against an empty
    database's 54–55, rising over a run as the story tables' pages evicted by the identity
    leaves were read back (round 66); with a 2 GB pool its share of an item was lower in every
    window of two neighbouring pairs of runs (round 67)."""
    if index_bytes <= IDENTITY_INDEX_POOL_SHARE * pool_bytes:
        return None
    return (
        f"the article identity index is {index_bytes / 2**20:,.0f} MB and PostgreSQL's shared_buffers"
        f" {pool_bytes / 2**20:,.0f} MB: each new article reads a page of the index from outside the"
        " buffer pool, and storing articles costs the server more as the table grows (set"
        ' shared_buffers to about twice the index; docs/operations.md, "A growing article table")'
    )


def _db_side(settings: Settings, now: datetime) -> dict[str, Any]:
    try:
        with session_scope(settings) as session:
            found = db_status(session, now, settings)
            index = identity_index(session.connection())
            warnings = database_warnings(session, settings, index)
    except Exception as exc:  # noqa: BLE001 - a dead database is reported, not raised
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return {
            "database": {"url": redact_url(settings.database_url), "ok": False, "error": error},
            **dict.fromkeys(DB_PARTS),
        }
    database = {
        "url": redact_url(settings.database_url),
        "ok": True,
        "error": None,
        "warnings": warnings,
        "identity_index": None
        if index is None
        else {"bytes": index.size_bytes, "shared_buffers_bytes": index.pool_bytes},
    }
    return {"database": database, **found}


def collect_status(
    settings: Settings, *, app: Celery | None = None, ping_timeout: float = 2.0
) -> dict[str, Any]:
    """The whole report. ``ping_timeout <= 0`` skips the worker ping (``workers.ok`` is null)."""
    now = utcnow()
    report: dict[str, Any] = {"generated_at": isoformat_utc(now)}
    report.update(_db_side(settings, now))
    report.update(queue_status(settings))
    if ping_timeout <= 0:
        report["workers"] = {"ok": None, "error": "not asked", "count": None, "answered": []}
    elif report["broker"]["ok"] is False:
        report["workers"] = {
            "ok": False,
            "error": "broker unreachable",
            "count": 0,
            "answered": [],
        }
    else:
        report["workers"] = worker_status(app or celery_app(settings), ping_timeout)
    return report


def check_status(report: dict[str, Any], settings: Settings) -> list[str]:
    """Why the service is unhealthy, one plain sentence each; empty means healthy."""
    reasons: list[str] = []
    database = report.get("database") or {}
    if not database.get("ok"):
        reasons.append(f"database unreachable: {database.get('error')}")
    beat = report.get("beat")
    if beat is not None:
        if beat.get("last_tick_at") is None:
            reasons.append("beat: no tick recorded (is beat running?)")
        elif beat.get("late"):
            reasons.append(
                f"beat late: last tick {beat['age_seconds']:.0f}s ago "
                f"(limit {settings.beat_late_seconds:.0f}s)"
            )
    broker = report.get("broker") or {}
    if broker.get("ok") is False:
        reasons.append(f"broker unreachable: {broker.get('error')}")
    workers = report.get("workers") or {}
    if workers.get("ok") is not None and not workers.get("count"):
        detail = f" ({workers['error']})" if workers.get("error") else ""
        reasons.append(f"no worker answered a ping{detail}")
    alerts = report.get("alerts") or {}
    backlog = alerts.get("oldest_backlog_age_seconds")
    if backlog is not None and backlog > settings.alert_backlog_seconds:
        reasons.append(
            f"alert backlog: oldest undelivered alert is {backlog:.0f}s old "
            f"(limit {settings.alert_backlog_seconds:.0f}s)"
        )
    return reasons


def readiness(settings: Settings) -> list[str]:
    """Why this deployment is not ready: database unreachable or beat late. Empty = ready."""
    now = utcnow()
    try:
        with session_scope(settings) as session:
            beat = beat_status(session, now, settings)
    except Exception as exc:  # noqa: BLE001 - reported as not ready
        return [f"database unreachable: {type(exc).__name__}: {exc}"]
    return check_status({"database": {"ok": True}, "beat": beat}, settings)
