"""Alert delivery from the outbox: each (alert, channel) is sent once, recorded, never repeated.

The order of one delivery, each step its own short transaction:

1. channels whose route does not want the alert's topics are left out (no row, not waited for);
2. the Delivery row for (alert, channel) is created if missing (unique key);
3. it is *claimed*: moved to ``sending`` only if it is pending, or retrying and due
   (``next_attempt_at``), or if an earlier claim's lease ran out (its worker died). Two workers
   holding the same message cannot both claim it;
4. a digest channel, or a channel over its ``max_per_minute``, *holds* the alert: a DigestItem
   row, the delivery ``held``; :func:`send_digests` sends it later inside one message;
5. otherwise the channel sends, then the row becomes ``sent``, or ``retrying`` with its own
   exponential backoff and jitter, or ``dead`` with its last error after ``MAX_ATTEMPTS``.

A crash between 5's send and its record leaves a ``sending`` row whose lease expires; the next
attempt sends again with the same ``idempotency_key``: delivery to external channels is
at-least-once, and receivers drop repeats by that key. The alert is ``delivered`` when every
routed channel has sent or held it, ``failed`` when one is dead. A failing channel never makes
the others send again: each has its own row.

Digests and burst summaries (:func:`send_digests`, every ``digest_check_seconds`` from beat):
held items are cut into a Digest row per (channel, kind, cut time) in one transaction, so an
alert is in exactly one digest per channel; the digest is claimed with a lease, sent, then its
items' deliveries become ``sent``. A crash before the record re-sends the same digest with the
same key.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

import structlog
from sqlalchemy import Boolean, DateTime, String, Text, and_, bindparam, case, func, or_, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from feedwatch import metrics, stories
from feedwatch.channels import AlertPayload, Channel, Copy, DigestPayload, TopicReason
from feedwatch.channels.base import DEFAULT_ROUTE, Route
from feedwatch.db import session_scope
from feedwatch.models import (
    Alert,
    AlertStatus,
    Article,
    Delivery,
    DeliveryStatus,
    Digest,
    DigestItem,
    Feed,
    Match,
    StoryCopy,
)
from feedwatch.settings import Settings
from feedwatch.store import _insert, _table, in_list, prepared
from feedwatch.timeutil import isoformat_utc

log = structlog.get_logger("feedwatch.alerts")

MAX_ATTEMPTS = 8
BACKOFF_BASE = 5.0  # seconds before the second attempt
BACKOFF_CAP = 300.0  # = workers.app.MAX_COUNTDOWN: a retry never waits longer
DIGEST_LEASE = timedelta(minutes=5)
PERIODS = {"hourly": timedelta(hours=1), "daily": timedelta(days=1), "burst": timedelta(minutes=1)}


class DeliveryIncomplete(Exception):
    """Some channel failed and will be retried; the task retries the alert after ``countdown``."""

    def __init__(self, message: str, countdown: float = BACKOFF_BASE) -> None:
        super().__init__(message)
        self.countdown = countdown


@dataclass(frozen=True)
class DeliveryReport:
    alert_id: int
    sent: list[str]
    skipped: list[str]
    failed: list[str]
    status: str
    held: tuple[str, ...] = ()


def backoff(attempts: int, rng: random.Random | None = None) -> float:
    """Seconds before retry ``attempts + 1``: doubling from BACKOFF_BASE, capped, jittered ×[0.5, 1]."""
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(attempts - 1, 0))
    return float(delay * (rng or random).uniform(0.5, 1.0))


def route_of(channel: Channel) -> Route:
    return getattr(channel, "route", DEFAULT_ROUTE)


# --- statements, built once (building one costs more CPU than running it) -----------------------

_A, _D = _table(Alert).c, _table(Delivery).c
_ART, _FEED, _MATCH, _COPY = _table(Article).c, _table(Feed).c, _table(Match).c, _table(StoryCopy).c


_LOAD_ALERTS = (
    sa_select(
        _A.id,
        _A.article_id,
        _A.topics,
        _A.status,
        sa_select(_COPY.id).where(_COPY.alert_id == _A.id).exists().label("copied"),
    )
    .where(in_list(_A.id))
    .order_by(_A.id)
)
# An alert's article and its outlet; its matches (best first) by a statement of their own. As
# one join, PostgreSQL's generic plan read the whole match table on every call whenever the
# statistics lagged behind the tables' growth (a new deployment's first minutes, a bulk import,
# a fresh benchmark database: 5.8 ms a call at 33,000 matches instead of 0.3, a fifth of
# PostgreSQL's CPU while ingesting). Apart, the two read by the primary keys and by the match
# index's leading column under the same statistics (tests/integration/test_generic_plans.py). One
# state seen to make the second a scan all the same: a match table analyzed while still empty,
# until autovacuum's next analyze.
_LOAD_ARTICLES = (
    sa_select(
        _ART.id,
        _ART.title,
        _ART.url,
        _ART.published_at,
        _ART.language,
        _ART.text,
        _ART.full_text,
        func.coalesce(func.nullif(_FEED.name, ""), _FEED.url).label("outlet"),
        _FEED.url.label("feed_url"),
    )
    .join(_table(Feed), _FEED.id == _ART.feed_id)
    .where(in_list(_ART.id))
)
_LOAD_MATCHES = (
    sa_select(
        _MATCH.article_id,
        _MATCH.topic,
        _MATCH.score,
        _MATCH.terms,
        _MATCH.snippet,
        _MATCH.stage,
        _MATCH.explanation,
    )
    .where(in_list(_MATCH.article_id))
    .order_by(_MATCH.article_id, _MATCH.score.desc(), _MATCH.id)
)
_MARK_SENT = (
    update(_table(Delivery))
    .where(in_list(_D.alert_id), _D.channel == bindparam("b_channel"))
    .values(status=DeliveryStatus.SENT, last_error=None, sent_at=bindparam("b_now"))
)
_DELIVERY_STATES = sa_select(_D.alert_id, _D.channel, _D.status, _D.last_error, _D.next_attempt_at).where(
    in_list(_D.alert_id)
)
# One row per alert of the batch, in id order (two batches holding the same alerts lock them in the
# same order): the attempt counted, and the status, delivered_at and last_error set where
# ``b_change``.
_change = bindparam("b_change", type_=Boolean)
_FINISH_ALERT = (
    update(_table(Alert))
    .where(_A.id == bindparam("b_id"))
    .values(
        attempts=_A.attempts + 1,
        status=case((_change, bindparam("b_status", type_=String)), else_=_A.status),
        delivered_at=case((_change, bindparam("b_at", type_=DateTime(timezone=True))), else_=_A.delivered_at),
        last_error=case((_change, bindparam("b_error", type_=Text)), else_=_A.last_error),
    )
)


# --- payloads ------------------------------------------------------------------------------------


def _highlights(match: Any, article: Any) -> list[tuple[int, int]]:
    """Spans of the match's hits inside its snippet (hits index the original title or text).

    ``match`` has the match's ``explanation``, ``snippet`` and ``stage``, ``article`` the
    article's ``title``, ``text`` and ``full_text``."""
    hits = match.explanation.get("hits", []) if isinstance(match.explanation, dict) else []
    lead = 1 if match.snippet.startswith("…") else 0
    core = match.snippet[lead:].removesuffix("…")
    spans: list[tuple[int, int]] = []
    # A full-text match's hits index the extracted page text, not the feed's teaser.
    body = (article.full_text or "") if match.stage == "full_text" else article.text
    for part, text in (("title", article.title), ("body", body)):
        at = text.find(core) if core else -1
        if at < 0:
            continue
        for hit in hits:
            start, end = int(hit.get("start", -1)), int(hit.get("end", -1))
            if hit.get("field") == part and at <= start < end <= at + len(core):
                spans.append((start - at + lead, end - at + lead))
        if spans:
            break
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):  # a phrase hit covers its words' hits: show the union
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


class _AlertRow(Protocol):
    id: int | None
    article_id: int
    topics: list[str]


def build_payloads(
    session: Session, rows: Sequence[_AlertRow], copied: set[int] | None = None
) -> dict[int, AlertPayload]:
    """Each alert's payload, in the order of ``rows``: one query for the articles and their
    feeds, one for their matches, one for the copies of the alerts in ``copied`` (None: of every
    alert)."""
    if not rows:
        return {}
    article_ids = {"b_ids": [a.article_id for a in rows]}
    articles = {r.id: r for r in session.execute(_LOAD_ARTICLES, article_ids)}
    reasons: dict[int, list[TopicReason]] = defaultdict(list)
    for m in session.execute(_LOAD_MATCHES, article_ids):
        spans = _highlights(m, articles[m.article_id])
        reasons[m.article_id].append(TopicReason(m.topic, m.score, list(m.terms), m.snippet, m.stage, spans))
    ids = [a.id for a in rows if a.id is not None and (copied is None or a.id in copied)]
    copies = stories.also_reported_many(session, ids) if ids else {}
    payloads: dict[int, AlertPayload] = {}
    for alert in rows:
        assert alert.id is not None
        article, why = articles[alert.article_id], reasons[alert.article_id]
        payloads[alert.id] = AlertPayload(
            alert_id=alert.id,
            idempotency_key=f"feedwatch-alert-{alert.id}",
            topics=[r.topic for r in why] or list(alert.topics),
            title=article.title,
            url=article.url,
            feed=article.outlet,
            feed_url=article.feed_url,
            published_at=isoformat_utc(article.published_at),
            language=article.language,
            reasons=why,
            also_reported=[
                Copy(c.outlet, c.title, c.url, isoformat_utc(c.published_at))
                for c in copies.get(alert.id, [])
            ],
        )
    return payloads


# --- a batch of alerts ---------------------------------------------------------------------------


@dataclass
class _Outcome:
    """What one delivery run did for one alert, channel by channel."""

    sent: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)


_State = tuple[str, str | None, datetime | None]  # a delivery's status, last error, next attempt


@dataclass
class _Results:
    """What one channel did with its claims in a batch, recorded together after the sends."""

    channel: str
    held: list[int] = field(default_factory=list)  # into a digest or a burst summary
    sent: list[int] = field(default_factory=list)
    failures: dict[int, _State] = field(default_factory=dict)  # retrying or dead
    deferred: list[int] = field(default_factory=list)  # released unsent (the lease budget ran out)

    def states(self, now: datetime) -> Iterator[tuple[int, _State]]:
        """Each alert's delivery row for this channel as the record leaves it."""
        yield from ((a, (DeliveryStatus.HELD, None, None)) for a in self.held)
        yield from ((a, (DeliveryStatus.SENT, None, None)) for a in self.sent)
        yield from self.failures.items()
        yield from ((a, (DeliveryStatus.RETRYING, None, now)) for a in self.deferred)


@dataclass(frozen=True)
class BatchReport:
    reports: list[DeliveryReport]
    retry_ids: list[int]  # alerts with a delivery retrying later (not failed)
    retry_in: float | None  # seconds until the earliest of those is due


def _claim_upsert(insert: Any) -> Any:
    """INSERT … ON CONFLICT DO UPDATE … WHERE claimable RETURNING (alert_id, attempts): a missing
    row is created claimed; an existing one is claimed if it is pending, retrying and due
    (``b_now``), or sending with a lease that ran out (claimed before ``b_stale``). Rows not
    returned were not claimable."""
    upsert = insert(_table(Delivery))
    now: Any = bindparam("b_now")
    claimable = or_(
        _D.status == DeliveryStatus.PENDING,
        and_(
            _D.status == DeliveryStatus.RETRYING, or_(_D.next_attempt_at.is_(None), _D.next_attempt_at <= now)
        ),
        and_(_D.status == DeliveryStatus.SENDING, _D.claimed_at < bindparam("b_stale")),
    )
    return upsert.on_conflict_do_update(
        index_elements=["alert_id", "channel"],
        set_={
            "status": upsert.excluded.status,
            "claimed_at": upsert.excluded.claimed_at,
            "attempts": _D.attempts + 1,
        },
        where=claimable,
    ).returning(_D.alert_id, _D.attempts)


def _claim(
    session: Session, channel: Channel, alert_ids: list[int], now: datetime, lease: timedelta
) -> tuple[dict[int, int], list[int]]:
    """Claim the channel's deliveries of ``alert_ids``: (alert id → attempts, to send now), held.

    One upsert (:func:`_claim_upsert`) creates the missing rows and claims the rest. Held
    alerts went into the channel's next digest, or into a burst summary when the channel is over
    its ``max_per_minute``. Alerts in neither were not claimable: another worker holds them, they
    are done, or their retry is not due yet.
    """
    table, route = _table(Delivery), route_of(channel)
    d = table.c
    quota: int | None = None
    if route.mode != "digest" and route.max_per_minute:
        recent = session.execute(
            sa_select(func.count())
            .select_from(table)
            .where(
                d.channel == channel.name,
                d.alert_id.not_in(alert_ids),
                d.claimed_at >= now - timedelta(minutes=1),
                d.status.in_([DeliveryStatus.SENDING, DeliveryStatus.SENT]),
            )
        ).scalar_one()
        quota = max(0, route.max_per_minute - int(recent))
    claimed = dict(
        session.execute(
            prepared(session, _claim_upsert),
            [
                {
                    "alert_id": a,
                    "channel": channel.name,
                    "status": DeliveryStatus.SENDING,
                    "attempts": 1,
                    "created_at": now,
                    "claimed_at": now,
                    "b_now": now,
                    "b_stale": now - lease,
                }
                for a in alert_ids
            ],
        ).all()
    )
    order = sorted(claimed)
    kind = "digest" if route.mode == "digest" else "burst"
    held = order if kind == "digest" else order[quota:] if quota is not None else []
    if held:
        session.execute(
            _insert(session, DigestItem).on_conflict_do_nothing(index_elements=["channel", "alert_id"]),
            [{"channel": channel.name, "alert_id": a, "kind": kind, "created_at": now} for a in held],
        )
        session.execute(
            update(table)
            .where(d.alert_id.in_(held), d.channel == channel.name)
            .values(status=DeliveryStatus.HELD, last_error=None)
        )
    return {a: claimed[a] for a in order[: len(order) - len(held)]}, held


def _send(
    channel: Channel,
    payloads: list[AlertPayload],
    attempts: dict[int, int],
    budget: float,
    clock: Callable[[], datetime],
    results: _Results,
) -> None:
    """Send each payload into ``results``; past ``budget`` (monotonic), release the rest unsent.

    A channel with ``send_many`` (:class:`~feedwatch.channels.base.Channel`) takes the batch in
    one call, and its failure is every payload's (the JSONL channel: one locked append and one
    fsync for the batch instead of one per alert)."""

    def send_one(group: list[AlertPayload]) -> None:
        channel.send(group[0])

    send_many = getattr(channel, "send_many", None)
    groups: list[list[AlertPayload]] = [[p] for p in payloads]
    send: Callable[[list[AlertPayload]], None] = send_one
    if send_many is not None and len(payloads) > 1:
        groups, send = [payloads], send_many
    for group in groups:
        if time.monotonic() > budget:
            results.deferred.extend(p.alert_id for p in group)
            continue
        try:
            send(group)
        except Exception as exc:  # noqa: BLE001 - any channel failure is recorded and retried
            for payload in group:
                _failed(channel, payload.alert_id, exc, attempts, clock, results)
            continue
        for payload in group:
            results.sent.append(payload.alert_id)
            metrics.observe_delivery(channel.name, DeliveryStatus.SENT)


def _failed(
    channel: Channel,
    alert_id: int,
    exc: Exception,
    attempts: dict[int, int],
    clock: Callable[[], datetime],
    results: _Results,
) -> None:
    """Record a failed send: retried after a backoff, or dead after ``MAX_ATTEMPTS``."""
    tries = attempts[alert_id]
    error = f"{type(exc).__name__}: {exc}"[:2000]
    dead = tries >= MAX_ATTEMPTS
    retry_at = None if dead else clock() + timedelta(seconds=backoff(tries))
    status = DeliveryStatus.DEAD if dead else DeliveryStatus.RETRYING
    results.failures[alert_id] = (status, error, retry_at)
    metrics.observe_delivery(channel.name, status)
    log.warning(
        "alert.channel_failed",
        alert_id=alert_id,
        channel=channel.name,
        attempts=tries,
        dead=dead,
        error=error,
    )


def _record(session: Session, results: _Results, now: datetime) -> None:
    d = _table(Delivery).c
    mine = d.channel == results.channel
    if results.sent:
        session.execute(_MARK_SENT, {"b_ids": results.sent, "b_channel": results.channel, "b_now": now})
    for alert_id, (status, error, retry_at) in results.failures.items():
        values: dict[str, object] = {"status": status, "last_error": error}
        if retry_at is not None:
            values["next_attempt_at"] = retry_at
        session.execute(update(_table(Delivery)).where(d.alert_id == alert_id, mine).values(**values))
    if results.deferred:  # not attempted: the claim's attempt is given back, due at once
        session.execute(
            update(_table(Delivery))
            .where(d.alert_id.in_(results.deferred), mine)
            .values(status=DeliveryStatus.RETRYING, next_attempt_at=now, attempts=d.attempts - 1)
        )


def _finish(
    session: Session,
    routed: dict[int, list[str]],
    known: dict[int, dict[str, _State]],
    status: dict[int, str],
    now: datetime,
) -> dict[int, float]:
    """Set each alert's status from its deliveries; returns the seconds until each alert's earliest
    retrying delivery is due. ``known`` holds what this run did per (alert, channel); the rows of
    the other routed channels are read. ``status`` is updated in place."""
    unknown = [i for i, names in routed.items() if any(c not in known[i] for c in names)]
    rows: dict[int, dict[str, _State]] = defaultdict(dict)
    if unknown:
        for alert_id, channel, state, error, due in session.execute(_DELIVERY_STATES, {"b_ids": unknown}):
            rows[alert_id][channel] = (state, error, due)
    waits: dict[int, float] = {}
    changes: list[dict[str, object]] = []
    for alert_id, names in sorted(routed.items()):
        mine = rows[alert_id] | known[alert_id]
        states = [mine[c][0] if c in mine else DeliveryStatus.PENDING for c in names]
        if all(s in (DeliveryStatus.SENT, DeliveryStatus.HELD) for s in states):
            status[alert_id] = AlertStatus.DELIVERED
            change = {"b_change": True, "b_status": status[alert_id], "b_at": now, "b_error": None}
        elif DeliveryStatus.DEAD in states:
            status[alert_id] = AlertStatus.FAILED
            error = "; ".join(f"{c}: {e}" for c, (s, e, _) in mine.items() if s == DeliveryStatus.DEAD)
            change = {"b_change": True, "b_status": status[alert_id], "b_at": None, "b_error": error}
        else:
            change = {"b_change": False, "b_status": None, "b_at": None, "b_error": None}
        changes.append({"b_id": alert_id, **change})
        dues = [due for s, _, due in mine.values() if s == DeliveryStatus.RETRYING and due is not None]
        if dues:
            due = min(dues)
            if due.tzinfo is None:  # SQLite hands back naive datetimes
                due = due.replace(tzinfo=now.tzinfo)
            waits[alert_id] = max(1.0, float((due - now).total_seconds()))
    if changes:
        session.execute(_FINISH_ALERT, changes)
    return waits


def deliver_many(
    alert_ids: Sequence[int],
    channels: Sequence[Channel],
    settings: Settings,
    clock: Callable[[], datetime],
) -> BatchReport:
    """Deliver a batch of alerts to every routed channel not yet done for each.

    Two transactions per batch, whatever its size: (1) read the alerts, claim (or hold) each
    channel's deliveries, build the payloads of the claimed ones; then the sends, outside any
    transaction; (2) record every send's result and set the alerts' statuses.

    A claim must be recorded before its lease runs out (another worker may claim it after): once
    half the lease is spent sending, the rest are released unsent, their attempt not counted, due
    again at once. A slow or hanging channel cannot hold a batch past its lease.
    """
    ids = sorted({int(i) for i in alert_ids})
    lease = timedelta(seconds=settings.delivery_lease_seconds)
    outcomes: dict[int, _Outcome] = {}
    to_send: dict[str, dict[int, int]] = {}  # channel -> alert id -> attempts, claimed to send now
    results: dict[str, _Results] = {}
    with session_scope(settings) as session:
        found = session.execute(_LOAD_ALERTS, {"b_ids": ids}).all()
        status = {r.id: r.status for r in found}
        routed = {r.id: [c.name for c in channels if route_of(c).wants(list(r.topics))] for r in found}
        todo = [r for r in found if r.status != AlertStatus.DELIVERED]
        todo_ids = {r.id for r in todo}
        for r in found:
            outcomes[r.id] = _Outcome(skipped=[] if r.id in todo_ids else list(routed[r.id]))
        now = clock()
        for channel in channels:
            wanted = [r.id for r in todo if channel.name in routed[r.id]]
            if not wanted:
                continue
            to_send[channel.name], held = _claim(session, channel, wanted, now, lease)
            results[channel.name] = _Results(channel.name, held=held)
            for alert_id in held:
                outcomes[alert_id].held.append(channel.name)
            for alert_id in set(wanted) - set(to_send[channel.name]) - set(held):
                outcomes[alert_id].skipped.append(channel.name)
        sending = {i for claimed in to_send.values() for i in claimed}
        payloads = build_payloads(
            session, [r for r in todo if r.id in sending], {r.id for r in todo if r.copied}
        )
    budget = time.monotonic() + settings.delivery_lease_seconds / 2
    for c in channels:
        if to_send.get(c.name):
            _send(c, [payloads[i] for i in to_send[c.name]], to_send[c.name], budget, clock, results[c.name])
    waits: dict[int, float] = {}
    if todo:
        with session_scope(settings) as session:
            now = clock()
            known: dict[int, dict[str, _State]] = {r.id: {} for r in todo}
            for result in results.values():
                _record(session, result, now)
                for alert_id, state in result.states(now):
                    known[alert_id][result.channel] = state
            waits = _finish(session, {r.id: routed[r.id] for r in todo}, known, status, now)
    for result in results.values():
        for alert_id in result.sent:
            outcomes[alert_id].sent.append(result.channel)
        for alert_id in [*result.failures, *result.deferred]:
            outcomes[alert_id].failed.append(result.channel)
    reports: list[DeliveryReport] = []
    for alert_id in ids:
        if alert_id not in outcomes:
            log.warning("alert.unknown", alert_id=alert_id)
            reports.append(DeliveryReport(alert_id, [], [], [], "unknown"))
            continue
        o = outcomes[alert_id]
        reports.append(DeliveryReport(alert_id, o.sent, o.skipped, o.failed, status[alert_id], tuple(o.held)))
    if todo_ids:
        _log_batch([r for r in reports if r.alert_id in todo_ids])
    retry = [i for i in waits if status[i] != AlertStatus.FAILED]
    return BatchReport(reports, retry, min((waits[i] for i in retry), default=None))


def _log_batch(reports: Sequence[DeliveryReport]) -> None:
    """One line for a batch's deliveries: the alert ids by channel and by what was done (sent,
    held, skipped, failed) and the alerts' statuses. A line an alert was a tenth of the alerts
    worker while ingesting (round 29 in docs/performance.md); a failed send has its own warning
    (``alert.channel_failed``), and the delivery rows keep each (alert, channel)."""
    done: dict[str, dict[str, list[int]]] = {"sent": {}, "held": {}, "skipped": {}, "failed": {}}
    for r in reports:
        for what, by_channel in done.items():
            for name in getattr(r, what):  # the report's channels that this was done for
                by_channel.setdefault(name, []).append(r.alert_id)
    log.info(
        "alert.delivery",
        alerts=len(reports),
        statuses=dict(Counter(r.status for r in reports)),
        **{what: by_channel for what, by_channel in done.items() if by_channel},
    )


def deliver(
    alert_id: int,
    channels: Sequence[Channel],
    settings: Settings,
    clock: Callable[[], datetime],
) -> DeliveryReport:
    """Deliver one alert (a batch of one). Raises DeliveryIncomplete to retry."""
    batch = deliver_many([alert_id], channels, settings, clock)
    if batch.retry_in is not None:
        raise DeliveryIncomplete(
            f"alert {alert_id}: a channel will be retried in {batch.retry_in:.0f}s", batch.retry_in
        )
    return batch.reports[0]


def retry_alerts(session: Session, alert_ids: Sequence[int] | None) -> list[int]:
    """Reset dead deliveries of the given alerts (or of every failed alert) for a replay.

    The alerts go back to ``pending``: the next tick (or the caller) publishes them again.
    """
    stmt = select(col(Alert.id)).where(Alert.status == AlertStatus.FAILED)
    if alert_ids is not None:
        stmt = select(col(Alert.id)).where(col(Alert.id).in_(list(alert_ids)))
    ids = list(session.execute(stmt).scalars())
    if not ids:
        return []
    session.execute(
        update(Delivery)
        .where(
            col(Delivery.alert_id).in_(ids),
            col(Delivery.status).not_in([DeliveryStatus.SENT, DeliveryStatus.HELD]),
        )
        .values(status=DeliveryStatus.RETRYING, attempts=0, next_attempt_at=None)
    )
    session.execute(
        update(Alert)
        .where(col(Alert.id).in_(ids), col(Alert.status) != AlertStatus.DELIVERED)
        .values(status=AlertStatus.PENDING, last_error=None)
    )
    return ids


# --- digests and burst summaries -----------------------------------------------------------------


@dataclass(frozen=True)
class DigestReport:
    channel: str
    kind: str
    digest_id: int
    alerts: int
    sent: bool
    error: str | None = None


def cut_time(now: datetime, period: timedelta) -> datetime:
    """The start of the period ``now`` is in, counted from the Unix epoch in UTC."""
    epoch = datetime(1970, 1, 1, tzinfo=now.tzinfo)
    return now - (now - epoch) % period


def _cut(session: Session, channel: str, kind: str, cut: datetime, now: datetime) -> None:
    """Put the channel's unassigned items held before ``cut`` into the digest of ``cut``."""
    waiting = and_(
        col(DigestItem.channel) == channel,
        col(DigestItem.kind) == kind,
        col(DigestItem.digest_id).is_(None),
        col(DigestItem.created_at) < cut,
    )
    if not session.execute(select(func.count()).select_from(DigestItem).where(waiting)).scalar_one():
        return
    session.execute(
        _insert(session, Digest)
        .values(channel=channel, kind=kind, period_start=cut, created_at=now, attempts=0)
        .on_conflict_do_nothing(index_elements=["channel", "kind", "period_start"])
    )
    digest = session.execute(
        select(Digest).where(Digest.channel == channel, Digest.kind == kind, Digest.period_start == cut)
    ).scalar_one()
    if digest.sent_at is not None:
        return  # an item committed after this digest went out waits for the next cut
    session.execute(update(DigestItem).where(waiting).values(digest_id=digest.id))


def _claim_digests(session: Session, channel: str, now: datetime) -> list[int]:
    free = and_(
        col(Digest.channel) == channel,
        col(Digest.sent_at).is_(None),
        or_(col(Digest.claimed_at).is_(None), col(Digest.claimed_at) < now - DIGEST_LEASE),
    )
    claimed: list[int] = []
    for digest_id in session.execute(select(col(Digest.id)).where(free).order_by(col(Digest.id))).scalars():
        result = session.execute(
            update(Digest)
            .where(col(Digest.id) == digest_id, free)
            .values(claimed_at=now, attempts=Digest.attempts + 1)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            claimed.append(digest_id)
    return claimed


def _send_digest(
    channel: Channel, digest_id: int, settings: Settings, clock: Callable[[], datetime]
) -> DigestReport:
    with session_scope(settings) as session:
        digest = session.get(Digest, digest_id)
        assert digest is not None
        items = session.execute(
            select(Alert)
            .join(DigestItem, col(DigestItem.alert_id) == col(Alert.id))
            .where(col(DigestItem.digest_id) == digest_id)
            .order_by(col(Alert.id))
        ).scalars()
        alerts = list(build_payloads(session, list(items)).values())
    kind: Literal["digest", "burst"] = "digest" if digest.kind == "digest" else "burst"
    payload = DigestPayload(
        idempotency_key=f"feedwatch-{kind}-{digest_id}",
        channel=channel.name,
        kind=kind,
        period_start=isoformat_utc(digest.period_start) or "",
        alerts=alerts,
    )
    try:
        channel.send_digest(payload)
    except Exception as exc:  # noqa: BLE001 - retried at the next send_digests run
        error = f"{type(exc).__name__}: {exc}"[:2000]
        with session_scope(settings) as session:
            session.execute(
                update(Digest).where(col(Digest.id) == digest_id).values(claimed_at=None, last_error=error)
            )
        log.warning("alert.digest_failed", channel=channel.name, digest_id=digest_id, error=error)
        return DigestReport(channel.name, kind, digest_id, len(alerts), False, error)
    now = clock()
    with session_scope(settings) as session:
        session.execute(
            update(Digest).where(col(Digest.id) == digest_id).values(sent_at=now, last_error=None)
        )
        session.execute(
            update(Delivery)
            .where(
                col(Delivery.channel) == channel.name,
                col(Delivery.alert_id).in_([a.alert_id for a in alerts]),
                col(Delivery.status) == DeliveryStatus.HELD,
            )
            .values(status=DeliveryStatus.SENT, sent_at=now)
        )
    log.info("alert.digest_sent", channel=channel.name, kind=kind, digest_id=digest_id, alerts=len(alerts))
    return DigestReport(channel.name, kind, digest_id, len(alerts), True)


def send_digests(
    channels: Sequence[Channel], settings: Settings, clock: Callable[[], datetime]
) -> list[DigestReport]:
    """Cut and send every digest and burst summary that is due; safe to run concurrently."""
    reports: list[DigestReport] = []
    for channel in channels:
        route = route_of(channel)
        now = clock()
        cuts = {"burst": cut_time(now, PERIODS["burst"])}
        if route.mode == "digest":
            cuts["digest"] = cut_time(now, PERIODS[route.every])
        with session_scope(settings) as session:
            for kind, cut in cuts.items():
                _cut(session, channel.name, kind, cut, now)
        with session_scope(settings) as session:
            claimed = _claim_digests(session, channel.name, now)
        reports.extend(_send_digest(channel, digest_id, settings, clock) for digest_id in claimed)
    return reports
