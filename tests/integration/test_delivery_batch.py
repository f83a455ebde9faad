"""Alert delivery in batches (``alerts.deliver_many``), on SQLite and PostgreSQL.

A batch claims each channel's deliveries with one upsert and records the results together; these
tests hold it to what one-alert delivery promised: each (alert, channel) sent once, a failure
retried on its own backoff without re-sending the others, the rate limit counted across the batch,
and no claim left unrecorded past its lease.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from sqlmodel import select
from support.settings import database_settings
from support.stories import add_article, add_feed

from feedwatch import alerts, db
from feedwatch.channels import AlertPayload, DigestPayload, Route
from feedwatch.models import Alert, Delivery, DigestItem, Match, StoryCopy
from feedwatch.settings import Settings

NOW = datetime(2025, 5, 1, 12, 0, 10, tzinfo=UTC)


@dataclass
class Recorder:
    name: str
    route: Route = field(default_factory=Route)
    fail_ids: set[int] = field(default_factory=set)
    pause: float = 0.0
    sent: list[int] = field(default_factory=list)
    payloads: list[AlertPayload] = field(default_factory=list)

    def send(self, p: AlertPayload) -> None:
        time.sleep(self.pause)
        if p.alert_id in self.fail_ids:
            raise RuntimeError(f"receiver refused {p.alert_id}")
        self.sent.append(p.alert_id)
        self.payloads.append(p)

    def send_digest(self, d: DigestPayload) -> None:
        raise AssertionError("no digest in these tests")


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    with database_settings(request.param, tmp_path) as s:
        yield s


def make_alerts(settings: Settings, count: int) -> list[int]:
    """``count`` alerts, each with two matches; the first has a copy from a second outlet."""
    ids = []
    with db.session_scope(settings) as session:
        feed, other = add_feed(session, "Outlet"), add_feed(session, "", "http://b/")
        for i in range(count):
            article = add_article(session, feed, f"k{i}", f"Title {i}", NOW)
            assert article.id is not None
            for topic, score in (("armenia_normalization", 0.5), ("russia_azerbaijan", 2.0)):
                session.add(
                    Match(article_id=article.id, topic=topic, score=score, terms=[topic], snippet="s")
                )
            alert = Alert(article_id=article.id, topics=["russia_azerbaijan"], created_at=NOW)
            session.add(alert)
            session.flush()
            assert alert.id is not None
            ids.append(alert.id)
        copy = add_article(session, other, "copy", "Copy title", NOW)
        assert copy.id is not None and other.id is not None
        session.add(StoryCopy(alert_id=ids[0], article_id=copy.id, feed_id=other.id, similarity=0.9))
    return ids


def deliveries(settings: Settings) -> dict[tuple[int, str], Delivery]:
    with db.session_scope(settings) as session:
        return {(d.alert_id, d.channel): d for d in session.exec(select(Delivery)).all()}


def test_a_batch_sends_each_alert_once_per_channel_with_its_payload(settings: Settings) -> None:
    ids = make_alerts(settings, 5)
    a, b = Recorder("a"), Recorder("b")
    batch = alerts.deliver_many([*ids, ids[0], 999_999], [a, b], settings, lambda: NOW)
    assert a.sent == ids and b.sent == ids
    assert batch.retry_ids == [] and batch.retry_in is None
    assert [r.status for r in batch.reports] == ["delivered"] * 5 + ["unknown"]
    first = a.payloads[0]
    assert [r.topic for r in first.reasons] == ["russia_azerbaijan", "armenia_normalization"]
    assert first.feed == "Outlet" and [c.outlet for c in first.also_reported] == ["http://b/"]
    assert all(p.also_reported == [] for p in a.payloads[1:])
    assert {(d.status, d.attempts) for d in deliveries(settings).values()} == {("sent", 1)}
    # the same message again (a redelivery): nothing is sent twice
    again = alerts.deliver_many(ids, [a, b], settings, lambda: NOW)
    assert a.sent == ids and b.sent == ids
    assert [r.skipped for r in again.reports] == [["a", "b"]] * 5
    with db.session_scope(settings) as session:
        assert {(x.status, x.attempts) for x in session.exec(select(Alert)).all()} == {("delivered", 1)}


def test_one_failure_is_retried_alone_on_its_backoff(settings: Settings) -> None:
    ids = make_alerts(settings, 4)
    flaky, steady = Recorder("flaky", fail_ids={ids[1]}), Recorder("steady")
    batch = alerts.deliver_many(ids, [flaky, steady], settings, lambda: NOW)
    assert batch.retry_ids == [ids[1]]
    assert batch.retry_in is not None and 1 <= batch.retry_in <= alerts.BACKOFF_BASE
    assert [r.status for r in batch.reports] == ["delivered", "pending", "delivered", "delivered"]
    row = deliveries(settings)[(ids[1], "flaky")]
    assert row.status == "retrying" and "refused" in (row.last_error or "")
    # not due yet: the retry message sends nothing
    early = alerts.deliver_many(batch.retry_ids, [flaky, steady], settings, lambda: NOW)
    assert early.retry_ids == [ids[1]] and flaky.sent == [ids[0], ids[2], ids[3]]
    flaky.fail_ids.clear()
    later = NOW + timedelta(minutes=5)
    done = alerts.deliver_many(batch.retry_ids, [flaky, steady], settings, lambda: later)
    assert done.retry_ids == [] and [r.status for r in done.reports] == ["delivered"]
    assert flaky.sent == [ids[0], ids[2], ids[3], ids[1]] and steady.sent == ids
    assert deliveries(settings)[(ids[1], "flaky")].attempts == 2


def test_a_batch_logs_one_line_with_its_alerts_by_channel(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The module's own logger, capturing (capture_logs would miss a logger cached earlier).
    capture = structlog.testing.LogCapture()
    monkeypatch.setattr(alerts, "log", structlog.wrap_logger(None, processors=[capture]))
    ids = make_alerts(settings, 4)
    flaky, chat = Recorder("flaky", fail_ids={ids[1]}), Recorder("chat", Route(max_per_minute=2))
    alerts.deliver_many(ids, [flaky, chat], settings, lambda: NOW)
    [line] = [e for e in capture.entries if e["event"] == "alert.delivery"]
    assert line["alerts"] == 4 and line["statuses"] == {"delivered": 3, "pending": 1}
    assert line["sent"] == {"flaky": [ids[0], ids[2], ids[3]], "chat": ids[:2]}
    assert line["held"] == {"chat": ids[2:]} and line["failed"] == {"flaky": [ids[1]]}
    assert "skipped" not in line
    [failed] = [e for e in capture.entries if e["event"] == "alert.channel_failed"]
    assert (failed["alert_id"], failed["channel"]) == (ids[1], "flaky")
    # The retry, not due yet: the batch claims nothing, and says so.
    capture.entries.clear()
    alerts.deliver_many([ids[1]], [flaky, chat], settings, lambda: NOW)
    [line] = [e for e in capture.entries if e["event"] == "alert.delivery"]
    assert line["alerts"] == 1 and "sent" not in line
    assert line["skipped"] == {"flaky": [ids[1]], "chat": [ids[1]]}  # not due; sent already


def test_the_rate_limit_counts_the_whole_batch(settings: Settings) -> None:
    ids = make_alerts(settings, 6)
    chat = Recorder("chat", Route(max_per_minute=2))
    alerts.deliver_many(ids[:1], [chat], settings, lambda: NOW)
    batch = alerts.deliver_many(ids[1:], [chat], settings, lambda: NOW)
    assert chat.sent == ids[:2]
    assert [r.held for r in batch.reports] == [(), ("chat",), ("chat",), ("chat",), ("chat",)]
    with db.session_scope(settings) as session:
        items = session.exec(select(DigestItem)).all()
        assert sorted(i.alert_id for i in items) == ids[2:] and {i.kind for i in items} == {"burst"}


def test_a_slow_channel_releases_the_rest_before_the_lease_runs_out(settings: Settings) -> None:
    # A 1 s lease: past half of it, the claims not yet sent are released unsent.
    settings = settings.model_copy(update={"delivery_lease_seconds": 1})
    ids = make_alerts(settings, 3)
    slow = Recorder("slow", pause=0.6)
    batch = alerts.deliver_many(ids, [slow], settings, lambda: NOW)
    assert slow.sent == ids[:1]
    assert batch.retry_ids == ids[1:] and batch.retry_in == 1.0
    rows = deliveries(settings)
    for alert_id in ids[1:]:  # released: not attempted, due at once, not counted as an attempt
        assert (rows[(alert_id, "slow")].status, rows[(alert_id, "slow")].attempts) == ("retrying", 0)
    slow.pause = 0.0
    assert alerts.deliver_many(batch.retry_ids, [slow], settings, lambda: NOW).retry_ids == []
    assert slow.sent == ids


def test_two_workers_with_the_same_batch_send_each_alert_once(settings: Settings) -> None:
    # A redelivered message while the first copy still runs: claims are exclusive, and both
    # copies finish (their alert rows are locked in id order, so they cannot deadlock).
    import threading

    ids = make_alerts(settings, 12)
    channel = Recorder("c", pause=0.01)
    errors: list[BaseException] = []

    def run(order: list[int]) -> None:
        try:
            alerts.deliver_many(order, [channel], settings, lambda: NOW)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(o,)) for o in (ids, list(reversed(ids)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(channel.sent) == ids
    with db.session_scope(settings) as session:
        assert {a.status for a in session.exec(select(Alert)).all()} == {"delivered"}
