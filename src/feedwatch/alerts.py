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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import structlog
from sqlalchemy import and_, func, or_, update
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
)
from feedwatch.settings import Settings
from feedwatch.store import _insert
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


# --- payloads ------------------------------------------------------------------------------------


def _highlights(match: Match, article: Article) -> list[tuple[int, int]]:
    """Spans of the match's hits inside its snippet (hits index the original title or text)."""
    hits = match.explanation.get("hits", []) if isinstance(match.explanation, dict) else []
    lead = 1 if match.snippet.startswith("…") else 0
    core = match.snippet[lead:].removesuffix("…")
    spans: list[tuple[int, int]] = []
    # A full-text match's hits index the extracted page text, not the feed's teaser.
    body = (article.full_text or "") if match.stage == "full_text" else article.text
    for field, text in (("title", article.title), ("body", body)):
        at = text.find(core) if core else -1
        if at < 0:
            continue
        for hit in hits:
            start, end = int(hit.get("start", -1)), int(hit.get("end", -1))
            if hit.get("field") == field and at <= start < end <= at + len(core):
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


def build_payload(session: Session, alert: Alert) -> AlertPayload:
    article = session.get(Article, alert.article_id)
    assert article is not None and alert.id is not None
    feed = session.get(Feed, article.feed_id)
    matches = session.execute(
        select(Match).where(Match.article_id == article.id).order_by(col(Match.score).desc())
    ).scalars()
    reasons = [
        TopicReason(m.topic, m.score, list(m.terms), m.snippet, m.stage, _highlights(m, article))
        for m in matches
    ]
    copies = [
        Copy(c.outlet, c.title, c.url, isoformat_utc(c.published_at))
        for c in stories.also_reported(session, alert.id)
    ]
    return AlertPayload(
        alert_id=alert.id,
        idempotency_key=f"feedwatch-alert-{alert.id}",
        topics=[r.topic for r in reasons] or list(alert.topics),
        title=article.title,
        url=article.url,
        feed=(feed.name or feed.url) if feed else "",
        feed_url=feed.url if feed else "",
        published_at=isoformat_utc(article.published_at),
        language=article.language,
        reasons=reasons,
        also_reported=copies,
    )


# --- one alert -----------------------------------------------------------------------------------


def _claim(session: Session, alert_id: int, channel: str, now: datetime, lease: timedelta) -> bool:
    session.execute(
        _insert(session, Delivery)
        .values(alert_id=alert_id, channel=channel, status=DeliveryStatus.PENDING, created_at=now)
        .on_conflict_do_nothing(index_elements=["alert_id", "channel"])
    )
    due = or_(col(Delivery.next_attempt_at).is_(None), col(Delivery.next_attempt_at) <= now)
    claimable = or_(
        col(Delivery.status) == DeliveryStatus.PENDING,
        and_(col(Delivery.status) == DeliveryStatus.RETRYING, due),
        and_(col(Delivery.status) == DeliveryStatus.SENDING, col(Delivery.claimed_at) < now - lease),
    )
    result = session.execute(
        update(Delivery)
        .where(col(Delivery.alert_id) == alert_id, col(Delivery.channel) == channel, claimable)
        .values(status=DeliveryStatus.SENDING, claimed_at=now, attempts=Delivery.attempts + 1)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _record(alert_id: int, channel: str, values: dict[str, object], settings: Settings) -> None:
    with session_scope(settings) as session:
        session.execute(
            update(Delivery)
            .where(col(Delivery.alert_id) == alert_id, col(Delivery.channel) == channel)
            .values(**values)
        )


def _over_rate(session: Session, alert_id: int, channel: str, limit: int, now: datetime) -> bool:
    """True when ``channel`` already sent (or is sending) ``limit`` alerts in the last minute."""
    recent = session.execute(
        select(func.count())
        .select_from(Delivery)
        .where(
            col(Delivery.channel) == channel,
            col(Delivery.alert_id) != alert_id,
            col(Delivery.claimed_at) >= now - timedelta(minutes=1),
            col(Delivery.status).in_([DeliveryStatus.SENDING, DeliveryStatus.SENT]),
        )
    ).scalar_one()
    return int(recent) >= limit


def _hold(session: Session, alert_id: int, channel: str, kind: str, now: datetime) -> None:
    """Put the alert into the channel's next digest (or burst summary); idempotent."""
    session.execute(
        _insert(session, DigestItem)
        .values(channel=channel, alert_id=alert_id, kind=kind, created_at=now)
        .on_conflict_do_nothing(index_elements=["channel", "alert_id"])
    )
    session.execute(
        update(Delivery)
        .where(col(Delivery.alert_id) == alert_id, col(Delivery.channel) == channel)
        .values(status=DeliveryStatus.HELD, last_error=None)
    )


def _finish(session: Session, alert: Alert, channels: Sequence[str], now: datetime) -> str:
    rows = session.execute(select(Delivery).where(Delivery.alert_id == alert.id)).scalars().all()
    by_channel = {d.channel: d for d in rows}
    statuses = [by_channel[c].status if c in by_channel else DeliveryStatus.PENDING for c in channels]
    if all(s in (DeliveryStatus.SENT, DeliveryStatus.HELD) for s in statuses):
        alert.status, alert.delivered_at, alert.last_error = AlertStatus.DELIVERED, now, None
    elif any(s == DeliveryStatus.DEAD for s in statuses):
        alert.status = AlertStatus.FAILED
        alert.last_error = "; ".join(
            f"{d.channel}: {d.last_error}" for d in rows if d.status == DeliveryStatus.DEAD
        )
    alert.attempts += 1
    session.add(alert)
    return alert.status


def _next_retry(session: Session, alert_id: int, now: datetime) -> float | None:
    """Seconds until the earliest retrying delivery of the alert is due, None if none waits."""
    due = session.execute(
        select(func.min(Delivery.next_attempt_at)).where(
            col(Delivery.alert_id) == alert_id, col(Delivery.status) == DeliveryStatus.RETRYING
        )
    ).scalar_one_or_none()
    if due is None:
        return None
    if due.tzinfo is None:  # SQLite hands back naive datetimes
        due = due.replace(tzinfo=now.tzinfo)
    return max(1.0, float((due - now).total_seconds()))


def _send_one(
    channel: Channel, payload: AlertPayload, attempts: int, settings: Settings, now: Callable[[], datetime]
) -> bool:
    """Send and record; True when sent."""
    alert_id = payload.alert_id
    try:
        channel.send(payload)
    except Exception as exc:  # noqa: BLE001 - any channel failure is recorded and retried
        dead = attempts >= MAX_ATTEMPTS
        error = f"{type(exc).__name__}: {exc}"[:2000]
        values: dict[str, object] = {"last_error": error}
        if dead:
            values["status"] = DeliveryStatus.DEAD
        else:
            values["status"] = DeliveryStatus.RETRYING
            values["next_attempt_at"] = now() + timedelta(seconds=backoff(attempts))
        _record(alert_id, channel.name, values, settings)
        metrics.observe_delivery(channel.name, str(values["status"]))
        log.warning(
            "alert.channel_failed",
            alert_id=alert_id,
            channel=channel.name,
            attempts=attempts,
            dead=dead,
            error=error,
        )
        return False
    _record(
        alert_id,
        channel.name,
        {"status": DeliveryStatus.SENT, "last_error": None, "sent_at": now()},
        settings,
    )
    metrics.observe_delivery(channel.name, DeliveryStatus.SENT)
    return True


def deliver(
    alert_id: int,
    channels: Sequence[Channel],
    settings: Settings,
    clock: Callable[[], datetime],
) -> DeliveryReport:
    """Deliver one alert to every routed channel not yet done. Raises DeliveryIncomplete to retry."""
    with session_scope(settings) as session:
        alert = session.get(Alert, alert_id)
        if alert is None:
            log.warning("alert.unknown", alert_id=alert_id)
            return DeliveryReport(alert_id, [], [], [], "unknown")
        routed = [c for c in channels if route_of(c).wants(list(alert.topics))]
        if alert.status == AlertStatus.DELIVERED:
            return DeliveryReport(alert_id, [], [c.name for c in routed], [], alert.status)
        payload = build_payload(session, alert)

    sent: list[str] = []
    skipped: list[str] = []
    failed: list[str] = []
    held: list[str] = []
    lease = timedelta(seconds=settings.delivery_lease_seconds)
    for channel in routed:
        route = route_of(channel)
        with session_scope(settings) as session:
            now = clock()
            if not _claim(session, alert_id, channel.name, now, lease):
                skipped.append(channel.name)
                continue
            attempts = session.execute(
                select(col(Delivery.attempts)).where(
                    col(Delivery.alert_id) == alert_id, col(Delivery.channel) == channel.name
                )
            ).scalar_one()
            kind = "digest" if route.mode == "digest" else None
            if kind is None and route.max_per_minute:
                kind = (
                    "burst"
                    if _over_rate(session, alert_id, channel.name, route.max_per_minute, now)
                    else None
                )
            if kind is not None:
                _hold(session, alert_id, channel.name, kind, now)
                held.append(channel.name)
                continue
        (sent if _send_one(channel, payload, attempts, settings, clock) else failed).append(channel.name)

    with session_scope(settings) as session:
        alert = session.get(Alert, alert_id)
        assert alert is not None
        status = _finish(session, alert, [c.name for c in routed], clock())
        wait = _next_retry(session, alert_id, clock())
    report = DeliveryReport(alert_id, sent, skipped, failed, status, tuple(held))
    log.info(
        "alert.delivery",
        alert_id=alert_id,
        status=status,
        sent=sent,
        held=held,
        skipped=skipped,
        failed=failed,
    )
    if wait is not None and status != AlertStatus.FAILED:
        raise DeliveryIncomplete(f"alert {alert_id}: a channel will be retried in {wait:.0f}s", wait)
    return report


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
        alerts = [build_payload(session, alert) for alert in items]
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
