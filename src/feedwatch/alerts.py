"""Alert delivery from the outbox: each (alert, channel) is sent once, recorded, never repeated.

The order of one delivery, each step its own short transaction:

1. the Delivery row for (alert, channel) is created if missing (unique key);
2. it is *claimed*: moved to ``sending`` only if it is pending/retrying, or if an earlier claim's
   lease ran out (its worker died). Two workers holding the same message cannot both claim it;
3. the channel sends, then the row becomes ``sent`` (or ``retrying`` / ``dead`` on failure).

A crash between 3's send and its record leaves a ``sending`` row whose lease expires; the next
attempt sends again with the same ``idempotency_key``: delivery to external channels is
at-least-once, and receivers drop repeats by that key. The alert is ``delivered`` when every
configured channel has a sent row, ``failed`` when one is dead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import and_, or_, update
from sqlmodel import Session, col, select

from feedwatch import metrics
from feedwatch.channels import AlertPayload, Channel
from feedwatch.channels.base import TopicReason
from feedwatch.db import session_scope
from feedwatch.models import Alert, AlertStatus, Article, Delivery, DeliveryStatus, Feed, Match
from feedwatch.settings import Settings
from feedwatch.store import _insert
from feedwatch.timeutil import isoformat_utc

log = structlog.get_logger("feedwatch.alerts")

DELIVERY_LEASE = timedelta(seconds=120)
MAX_ATTEMPTS = 8


class DeliveryIncomplete(Exception):
    """Some channel failed and will be retried; the task retries the whole alert later."""


@dataclass(frozen=True)
class DeliveryReport:
    alert_id: int
    sent: list[str]
    skipped: list[str]
    failed: list[str]
    status: str


def build_payload(session: Session, alert: Alert) -> AlertPayload:
    article = session.get(Article, alert.article_id)
    assert article is not None and alert.id is not None
    feed = session.get(Feed, article.feed_id)
    matches = session.execute(
        select(Match).where(Match.article_id == article.id).order_by(col(Match.score).desc())
    ).scalars()
    reasons = [TopicReason(m.topic, m.score, list(m.terms), m.snippet, m.stage) for m in matches]
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
    )


def _claim(session: Session, alert_id: int, channel: str, now: datetime) -> bool:
    session.execute(
        _insert(session, Delivery)
        .values(alert_id=alert_id, channel=channel, status=DeliveryStatus.PENDING, created_at=now)
        .on_conflict_do_nothing(index_elements=["alert_id", "channel"])
    )
    claimable = or_(
        col(Delivery.status).in_([DeliveryStatus.PENDING, DeliveryStatus.RETRYING]),
        and_(
            col(Delivery.status) == DeliveryStatus.SENDING,
            col(Delivery.claimed_at) < now - DELIVERY_LEASE,
        ),
    )
    result = session.execute(
        update(Delivery)
        .where(col(Delivery.alert_id) == alert_id, col(Delivery.channel) == channel, claimable)
        .values(status=DeliveryStatus.SENDING, claimed_at=now, attempts=Delivery.attempts + 1)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _record(
    alert_id: int, channel: str, status: str, error: str | None, now: datetime, settings: Settings
) -> None:
    with session_scope(settings) as session:
        values: dict[str, object] = {"status": status, "last_error": error}
        if status == DeliveryStatus.SENT:
            values["sent_at"] = now
        session.execute(
            update(Delivery)
            .where(col(Delivery.alert_id) == alert_id, col(Delivery.channel) == channel)
            .values(**values)
        )


def _finish(session: Session, alert: Alert, channels: Sequence[str], now: datetime) -> str:
    rows = session.execute(select(Delivery).where(Delivery.alert_id == alert.id)).scalars().all()
    by_channel = {d.channel: d for d in rows}
    statuses = [by_channel[c].status if c in by_channel else DeliveryStatus.PENDING for c in channels]
    if all(s == DeliveryStatus.SENT for s in statuses):
        alert.status, alert.delivered_at, alert.last_error = AlertStatus.DELIVERED, now, None
    elif any(s == DeliveryStatus.DEAD for s in statuses):
        alert.status = AlertStatus.FAILED
        alert.last_error = "; ".join(
            f"{d.channel}: {d.last_error}" for d in rows if d.status == DeliveryStatus.DEAD
        )
    alert.attempts += 1
    session.add(alert)
    return alert.status


def deliver(
    alert_id: int,
    channels: Sequence[Channel],
    settings: Settings,
    clock: Callable[[], datetime],
) -> DeliveryReport:
    """Deliver one alert to every channel not yet sent. Raises DeliveryIncomplete to retry."""
    with session_scope(settings) as session:
        alert = session.get(Alert, alert_id)
        if alert is None:
            log.warning("alert.unknown", alert_id=alert_id)
            return DeliveryReport(alert_id, [], [], [], "unknown")
        if alert.status == AlertStatus.DELIVERED:
            return DeliveryReport(alert_id, [], [c.name for c in channels], [], alert.status)
        payload = build_payload(session, alert)

    sent: list[str] = []
    skipped: list[str] = []
    failed: list[str] = []
    for channel in channels:
        with session_scope(settings) as session:
            claimed = _claim(session, alert_id, channel.name, clock())
            attempts = session.execute(
                select(col(Delivery.attempts)).where(
                    col(Delivery.alert_id) == alert_id, col(Delivery.channel) == channel.name
                )
            ).scalar_one()
        if not claimed:
            skipped.append(channel.name)
            continue
        try:
            channel.send(payload)
        except Exception as exc:  # noqa: BLE001 - any channel failure is recorded and retried
            dead = attempts >= MAX_ATTEMPTS
            status = DeliveryStatus.DEAD if dead else DeliveryStatus.RETRYING
            _record(alert_id, channel.name, status, f"{type(exc).__name__}: {exc}", clock(), settings)
            log.warning(
                "alert.channel_failed",
                alert_id=alert_id,
                channel=channel.name,
                attempts=attempts,
                dead=dead,
                error=str(exc),
            )
            metrics.observe_delivery(channel.name, status)
            failed.append(channel.name)
            continue
        _record(alert_id, channel.name, DeliveryStatus.SENT, None, clock(), settings)
        metrics.observe_delivery(channel.name, DeliveryStatus.SENT)
        sent.append(channel.name)

    with session_scope(settings) as session:
        alert = session.get(Alert, alert_id)
        assert alert is not None
        status = _finish(session, alert, [c.name for c in channels], clock())
    report = DeliveryReport(alert_id, sent, skipped, failed, status)
    log.info(
        "alert.delivery",
        alert_id=alert_id,
        status=status,
        sent=sent,
        skipped=skipped,
        failed=failed,
    )
    if failed and status != AlertStatus.FAILED:
        raise DeliveryIncomplete(f"alert {alert_id}: {', '.join(failed)} failed; will retry")
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
        .where(col(Delivery.alert_id).in_(ids), col(Delivery.status) != DeliveryStatus.SENT)
        .values(status=DeliveryStatus.RETRYING, attempts=0)
    )
    session.execute(
        update(Alert)
        .where(col(Alert.id).in_(ids), col(Alert.status) != AlertStatus.DELIVERED)
        .values(status=AlertStatus.PENDING, last_error=None)
    )
    return ids
