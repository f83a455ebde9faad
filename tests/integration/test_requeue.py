"""``store.alerts_to_requeue``: the alerts whose message may be lost, on both databases —
pending past the grace or queued past the timeout, never delivered or failed ones, oldest
first, at most ``limit``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session

from feedwatch import store
from feedwatch.models import Alert, AlertStatus, Article, Feed

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
GRACE, TIMEOUT = timedelta(seconds=10), timedelta(seconds=300)


def _alert(
    session: Session, feed_id: int, n: int, status: str, age: timedelta, queued: timedelta | None
) -> int:
    article = Article(
        identity_key=f"{n:064x}", feed_id=feed_id, title=f"a{n}", published_at=NOW, content_hash="0" * 64
    )
    session.add(article)
    session.flush()
    assert article.id is not None
    alert = Alert(
        article_id=article.id,
        status=status,
        created_at=NOW - age,
        queued_at=None if queued is None else NOW - queued,
    )
    session.add(alert)
    session.flush()
    assert alert.id is not None
    return alert.id


def test_lost_alerts_oldest_first(session: Session) -> None:
    feed = Feed(config_url="http://127.0.0.1/f", url="http://127.0.0.1/f", name="f")
    session.add(feed)
    session.flush()
    assert feed.id is not None
    second, minute, hour = timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1)
    cases = [
        (AlertStatus.PENDING, hour, None, True),  # its message was never published
        (AlertStatus.PENDING, 5 * second, None, False),  # inside the grace: on its way
        (AlertStatus.QUEUED, hour, 10 * minute, True),  # published, never delivered
        (AlertStatus.QUEUED, hour, minute, False),  # published a minute ago
        (AlertStatus.DELIVERED, hour, hour, False),
        (AlertStatus.FAILED, hour, hour, False),
        (AlertStatus.PENDING, minute, None, True),
        (AlertStatus.QUEUED, 2 * hour, hour, True),
    ]
    ids = [_alert(session, feed.id, n, *case[:3]) for n, case in enumerate(cases)]
    lost = [alert_id for alert_id, case in zip(ids, cases, strict=True) if case[3]]

    assert store.alerts_to_requeue(session, NOW, GRACE, TIMEOUT, limit=100) == sorted(lost)
    assert store.alerts_to_requeue(session, NOW, GRACE, TIMEOUT, limit=2) == sorted(lost)[:2]
    assert store.alerts_to_requeue(session, NOW - 2 * hour, GRACE, TIMEOUT, limit=100) == []


def test_marking_queued_never_moves_an_alert_back(session: Session) -> None:
    feed = Feed(config_url="http://127.0.0.1/f", url="http://127.0.0.1/f", name="f")
    session.add(feed)
    session.flush()
    assert feed.id is not None
    hour = timedelta(hours=1)
    statuses = [AlertStatus.PENDING, AlertStatus.QUEUED, AlertStatus.DELIVERED, AlertStatus.FAILED]
    ids = [_alert(session, feed.id, n, status, hour, hour) for n, status in enumerate(statuses)]

    store.mark_alerts_queued(session, ids, NOW)
    session.expire_all()
    after = {a.id: (a.status, a.queued_at) for a in (session.get(Alert, i) for i in ids) if a is not None}
    assert [after[i][0] for i in ids] == [
        AlertStatus.QUEUED,
        AlertStatus.QUEUED,
        AlertStatus.DELIVERED,
        AlertStatus.FAILED,
    ]
    stamped = [after[i][1] for i in ids]
    assert [s is not None and s.replace(tzinfo=UTC) == NOW for s in stamped] == [True, True, False, False]
