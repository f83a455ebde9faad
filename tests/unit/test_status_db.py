"""db_status, the filesystem queue count, the metrics built from a report, and the ops commands,
on a temporary SQLite database (no broker, no worker)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from support.settings import migrated_settings

from feedwatch import db, metrics, ops
from feedwatch.models import (
    Alert,
    AlertStatus,
    Article,
    Delivery,
    DeliveryStatus,
    Feed,
    FeedState,
    Heartbeat,
    Match,
)
from feedwatch.settings import Settings
from feedwatch.status import collect_status, db_status, queue_status
from feedwatch.timeutil import utcnow

NOW = utcnow().replace(microsecond=0)


@pytest.fixture(autouse=True)
def _fresh_now(monkeypatch: pytest.MonkeyPatch) -> None:
    # Fixtures are stamped relative to NOW while scrape-time metrics use the real clock: take
    # NOW when each test starts, not at import, so a long suite cannot age the fixtures.
    monkeypatch.setattr(sys.modules[__name__], "NOW", utcnow().replace(microsecond=0))


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    with migrated_settings(monkeypatch, tmp_path, BROKER_URL="filesystem://") as s:
        yield s


def _feed(n: int, **fields: Any) -> Feed:
    fields.setdefault("name", f"f{n}")
    return Feed(config_url=f"http://feeds.test/{n}", url=f"http://feeds.test/{n}", **fields)


def _article(feed_id: int, key: str, fetched_at: datetime, flagged: bool = False) -> Article:
    return Article(
        identity_key=key,
        feed_id=feed_id,
        title=f"title {key}",
        published_at=fetched_at,
        fetched_at=fetched_at,
        content_hash=key,
        flagged=flagged,
    )


@pytest.fixture
def populated(settings: Settings) -> Settings:
    old = NOW - timedelta(minutes=10)
    with db.session_scope(settings) as s:
        feeds = [
            _feed(1, state=FeedState.OK, next_check_at=NOW + timedelta(days=1)),
            _feed(2, state=FeedState.OK, next_check_at=old),  # overdue
            _feed(3, state=FeedState.OK, next_check_at=old, claimed_at=NOW),  # claimed: not overdue
            _feed(
                4,
                state=FeedState.FAILING,
                next_check_at=NOW + timedelta(days=3),
                error_count=7,
                error_class="timeout",
                error_message="read timed out",
                last_error_at=NOW,
            ),
            _feed(
                5,
                state=FeedState.BACKING_OFF,
                next_check_at=NOW + timedelta(days=2),
                error_count=2,
                error_class="http_5xx",
                error_message="503",
            ),
            _feed(6, state=FeedState.OK, enabled=False, next_check_at=old),  # off: disabled
            _feed(7, enabled=False, tags=["ingest"]),  # ad-hoc ingest source: not counted
        ]
        s.add_all(feeds)
        s.flush()
        f1 = feeds[0].id
        assert f1 is not None
        arts = [
            _article(f1, "a-recent", NOW - timedelta(minutes=5), flagged=True),
            _article(f1, "a-today", NOW - timedelta(hours=3)),
            _article(f1, "a-old", NOW - timedelta(days=3), flagged=True),
        ]
        s.add_all(arts)
        s.flush()
        s.add(Match(article_id=arts[0].id, topic="russia_azerbaijan", score=2.0, created_at=NOW))
        s.add(
            Match(
                article_id=arts[2].id,
                topic="russia_azerbaijan",
                score=2.0,
                created_at=old - timedelta(days=3),
            )
        )
        s.add(
            Match(
                article_id=arts[2].id,
                topic="armenia_normalization",
                score=1.5,
                created_at=old - timedelta(days=3),
            )
        )
        s.add(
            Alert(article_id=arts[0].id, status=AlertStatus.PENDING, created_at=NOW - timedelta(seconds=400))
        )
        s.add(
            Alert(article_id=arts[1].id, status=AlertStatus.QUEUED, created_at=NOW - timedelta(seconds=100))
        )
        s.add(Alert(article_id=arts[2].id, status=AlertStatus.FAILED, created_at=NOW - timedelta(days=3)))
        s.add(Heartbeat(name="beat", at=NOW - timedelta(seconds=5), detail={"claimed": 2}))
    return settings


def test_db_status_counts(populated: Settings) -> None:
    with db.session_scope(populated) as s:
        report = db_status(s, NOW, populated)
    feeds = report["feeds"]
    assert feeds["total"] == 6
    assert feeds["by_state"] == {
        "new": 0,
        "ok": 3,
        "not_modified": 0,
        "backing_off": 1,
        "failing": 1,
        "disabled": 1,
    }
    assert feeds["overdue"] == 1
    assert [(w["id"], w["error_class"], w["error_message"]) for w in feeds["worst"]] == [
        (4, "timeout", "read timed out"),
        (5, "http_5xx", "503"),
    ]
    alerts = report["alerts"]
    assert (alerts["pending"], alerts["queued"], alerts["delivered"], alerts["failed"]) == (1, 1, 0, 1)
    assert alerts["oldest_backlog_age_seconds"] == 400.0
    assert report["articles"] == {"last_hour": 1, "last_day": 2, "flagged_last_day": 1}
    assert report["matches"]["by_topic_total"] == {"russia_azerbaijan": 2, "armenia_normalization": 1}
    assert report["matches"]["by_topic_last_day"] == {"russia_azerbaijan": 1}
    beat = report["beat"]
    assert beat["age_seconds"] == 5.0 and beat["late"] is False and beat["detail"] == {"claimed": 2}


def test_full_text_status_counts_what_waits_and_the_last_days_finished(settings: Settings) -> None:
    """The candidates waiting, however old; the ones that finished in the last day, by outcome,
    and the day's failures by class; none of the stage's older history (the report is read at
    every scrape of ``/metrics``, and the totals of every candidate ever finished grew with the
    table: round 65). The gauges carry the same figures."""
    candidates = [
        ("pending", None, NOW - timedelta(days=2), None),
        ("pending", None, NOW - timedelta(minutes=1), None),
        ("ok", None, NOW - timedelta(hours=2), NOW - timedelta(hours=1)),
        ("ok", None, NOW - timedelta(days=3), NOW - timedelta(days=3)),
        ("failed", "http_5xx", NOW - timedelta(hours=3), NOW - timedelta(hours=2)),
        ("failed", "timeout", NOW - timedelta(days=2), NOW - timedelta(days=2)),
        (None, None, None, None),  # never a candidate
    ]
    with db.session_scope(settings) as s:
        feed = _feed(1)
        s.add(feed)
        s.flush()
        assert feed.id is not None
        for n, (status, error, requested, extracted) in enumerate(candidates):
            article = _article(feed.id, f"ft-{n}", NOW - timedelta(days=3))
            article.full_text_status, article.full_text_error = status, error
            article.full_text_requested_at, article.extracted_at = requested, extracted
            s.add(article)
    with db.session_scope(settings) as s:
        report = db_status(s, NOW, settings)["full_text"]
    assert report == {
        "pending": 2,
        "ok_last_day": 1,
        "failed_last_day": 1,
        "failed_last_day_by_class": {"http_5xx": 1},
        "oldest_pending_age_seconds": 2 * 86_400.0,
    }
    (settings.broker_dir / "queue").mkdir(parents=True)
    fams = _families(metrics.exposition_registry(settings, ping_timeout=0))
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in fams.values() for s in f.samples}
    assert samples[("feedwatch_full_text_pending", ())] == 2
    assert samples[("feedwatch_full_text_finished_last_day", (("status", "ok"),))] == 1
    assert samples[("feedwatch_full_text_finished_last_day", (("status", "failed"),))] == 1
    assert samples[("feedwatch_full_text_failures_last_day", (("error_class", "http_5xx"),))] == 1


def test_beat_missing_or_late(settings: Settings) -> None:
    with db.session_scope(settings) as s:
        assert db_status(s, NOW, settings)["beat"]["late"] is True
        s.add(Heartbeat(name="beat", at=NOW - timedelta(seconds=settings.beat_late_seconds + 1)))
    with db.session_scope(settings) as s:
        beat = db_status(s, NOW, settings)["beat"]
    assert beat["late"] is True and beat["last_tick_at"] is not None


def test_filesystem_queue_depths(settings: Settings) -> None:
    from workers.app import create_app

    app = create_app(settings)
    for _ in range(3):
        app.send_task("feedwatch.poll_feed", args=[[1]], queue="feeds")
    app.send_task("feedwatch.deliver_alert", args=[1], queue="alerts")
    folder = settings.broker_dir / "queue"
    stamp = (NOW - timedelta(minutes=2)).timestamp()
    for path in folder.glob("*.feeds.msg"):
        os.utime(path, (stamp, stamp))
    found = queue_status(settings)
    assert found["broker"] == {"url": "filesystem:///", "ok": True, "error": None, "kind": "filesystem"}
    q = found["queues"]
    assert (q["feeds"]["ready"], q["alerts"]["ready"], q["default"]["ready"]) == (3, 1, 0)
    assert q["feeds"]["oldest_ready_age_seconds"] >= 119
    assert q["feeds"]["unacked"] is None  # the filesystem transport cannot tell
    assert q["default"]["oldest_ready_age_seconds"] is None


def test_broker_down_still_reports_database(populated: Settings) -> None:
    down = populated.model_copy(update={"broker_url": "redis://127.0.0.1:9/0"})
    report = collect_status(down, ping_timeout=0.5)
    assert report["broker"]["ok"] is False and report["broker"]["error"]
    assert report["workers"]["ok"] is False
    assert report["database"]["ok"] is True and report["alerts"]["pending"] == 1
    assert all(q["ready"] is None for q in report["queues"].values())


def test_database_down_still_reports_broker(settings: Settings) -> None:
    (settings.broker_dir / "queue").mkdir(parents=True)
    gone = settings.model_copy(update={"database_url": "postgresql+psycopg://nobody@127.0.0.1:9/none"})
    report = collect_status(gone, ping_timeout=0)
    assert report["database"]["ok"] is False and report["database"]["error"]
    assert report["feeds"] is None and report["beat"] is None
    assert report["broker"]["ok"] is True


def _families(registry: CollectorRegistry) -> dict[str, Any]:
    text = generate_latest(registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_status_metrics_and_process_counters(populated: Settings) -> None:
    from feedwatch.pipeline import PollReport

    def value(metric: Any) -> float:
        return float(metric._value.get())

    counters = (
        metrics.POLLS.labels("error", "timeout"),
        metrics.POLLS.labels("ok", ""),
        metrics.FETCH_BYTES,
        metrics.NEW_ARTICLES,
        metrics.FLAGGED_ARTICLES,
        metrics.KEPT_ITEMS,
    )
    before = [value(c) for c in counters]
    fetch_ok = metrics.FETCH_SECONDS.labels("ok")._sum.get()
    fetch_error = metrics.FETCH_SECONDS.labels("error")._sum.get()
    metrics.observe_polls(
        [
            PollReport(feed_id=1, url="u", outcome="error", error_class="timeout", duration_ms=1500),
            PollReport(
                feed_id=2, url="u", outcome="ok", bytes=100, new=3, flagged=1, kept=47, duration_ms=200
            ),
            PollReport(feed_id=3, url="u", outcome="error", error_class="timeout", duration_ms=900),
            PollReport(feed_id=4, url="u", outcome="ok", bytes=50, new=2, duration_ms=300),
        ]
    )
    metrics.observe_delivery("console", "sent")
    after = [value(c) for c in counters]
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 2, 150, 5, 1, 47]
    assert metrics.FETCH_SECONDS.labels("ok")._sum.get() == pytest.approx(fetch_ok + 0.5)
    assert metrics.FETCH_SECONDS.labels("error")._sum.get() == pytest.approx(fetch_error + 2.4)

    (populated.broker_dir / "queue").mkdir(parents=True)
    fams = _families(metrics.exposition_registry(populated, ping_timeout=0))
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in fams.values() for s in f.samples}
    assert samples[("feedwatch_alerts", (("status", "pending"),))] == 1
    assert samples[("feedwatch_feeds", (("state", "failing"),))] == 1
    assert samples[("feedwatch_feeds_overdue", ())] == 1
    assert samples[("feedwatch_beat_late", ())] == 0
    assert samples[("feedwatch_alert_backlog_age_seconds", ())] >= 400
    assert samples[("feedwatch_matches_total", (("topic", "russia_azerbaijan"),))] == 2
    assert samples[("feedwatch_up", (("component", "database"),))] == 1
    assert ("feedwatch_queue_messages", (("queue", "feeds"), ("state", "ready"))) in samples
    assert samples[("feedwatch_polls_total", (("error_class", "timeout"), ("outcome", "error")))] >= 1
    assert samples[("feedwatch_deliveries_total", (("channel", "console"), ("status", "sent")))] >= 1
    assert "feedwatch_fetch_duration_seconds" in fams


# --- the commands ------------------------------------------------------------------------------


def _run(*args: str) -> Any:
    result = CliRunner().invoke(_cli(), list(args), catch_exceptions=False)
    return result


def _cli() -> Any:
    import click

    @click.group()
    def main() -> None:
        pass

    for command in ops.COMMANDS:
        main.add_command(command)
    return main


def test_status_json_and_check(populated: Settings) -> None:
    result = _run("status", "--json", "--ping-timeout", "0")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    for key in ("queues", "workers", "beat", "feeds", "alerts", "articles", "broker", "database"):
        assert key in report
    assert set(report["queues"]) == {"feeds", "alerts", "default", "articles", "upkeep"}
    # the pending alert is 400 s old, over the 300 s default: the check fails and says why
    result = _run("status", "--check", "--ping-timeout", "0")
    assert result.exit_code == 1
    assert "alert backlog" in result.output
    result = _run("status", "--ping-timeout", "0")
    assert result.exit_code == 0 and "feeds with errors" in result.output


def test_status_check_fails_without_beat(settings: Settings) -> None:
    result = _run("status", "--check", "--ping-timeout", "0")
    assert result.exit_code == 1
    assert "beat: no tick recorded" in result.output


def test_feeds_commands(populated: Settings) -> None:
    errors = json.loads(_run("feeds", "errors", "--json").output)
    assert [(f["id"], f["error_class"]) for f in errors] == [(4, "timeout"), (5, "http_5xx")]
    listed = json.loads(_run("feeds", "list", "--json", "--state", "failing").output)
    assert [f["id"] for f in listed] == [4]
    shown = json.loads(_run("feeds", "show", "4", "--json").output)
    for key in ("next_check_at", "next_check_reason", "poll_history", "redirect_history", "error_class"):
        assert key in shown
    assert _run("feeds", "show", "999").exit_code != 0
    assert "timeout" in _run("feeds", "errors").output


def test_feeds_list_shows_the_size_the_tick_batches_by(settings: Settings) -> None:
    with db.session_scope(settings) as s:
        s.add(_feed(1, body_bytes=1_234_567))
        s.add(_feed(2, body_bytes=48_213))
        s.add(_feed(3))
    listed = json.loads(_run("feeds", "list", "--json").output)
    assert [f["body_bytes"] for f in listed] == [1_234_567, 48_213, None]
    output = _run("feeds", "list").output
    assert "1.2 MB" in output and "48.2 kB" in output


def test_feed_text_is_not_markup(settings: Settings) -> None:
    with db.session_scope(settings) as s:
        s.add(_feed(1, name="[bold red]x[/] \x1b[2J", error_count=1, error_class="parse_error"))
    output = _run("feeds", "errors").output
    assert "[bold red]x[/]" in output and "\x1b[2J" not in output


def test_alerts_show_and_retry(populated: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    with db.session_scope(populated) as s:
        s.add(
            Delivery(alert_id=3, channel="console", status=DeliveryStatus.DEAD, attempts=8, last_error="boom")
        )
        s.add(Delivery(alert_id=3, channel="jsonl", status=DeliveryStatus.SENT, attempts=1))
    shown = json.loads(_run("alerts", "show", "3", "--json").output)
    assert {m["topic"] for m in shown["matches"]} == {"russia_azerbaijan", "armenia_normalization"}
    assert {d["channel"]: d["status"] for d in shown["deliveries"]} == {"console": "dead", "jsonl": "sent"}
    assert "armenia_normalization" in _run("alerts", "show", "3").output
    assert [a["id"] for a in json.loads(_run("alerts", "list", "--json", "--status", "failed").output)] == [3]

    def broker_down(alert_ids: list[int]) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(ops, "_publish_alert", broker_down)
    result = _run("alerts", "retry", "--failed")
    assert result.exit_code == 0 and "next beat tick" in result.output
    with db.session_scope(populated) as s:
        alert = s.get(Alert, 3)
        assert alert is not None and alert.status == AlertStatus.PENDING
        dead = s.get(Delivery, 1)
        assert dead is not None and dead.status == DeliveryStatus.RETRYING

    published: list[int] = []
    monkeypatch.setattr(ops, "_publish_alert", published.extend)
    result = _run("alerts", "retry", "3")
    assert result.exit_code == 0 and "published 1" in result.output
    assert published == [3]
    with db.session_scope(populated) as s:
        alert = s.get(Alert, 3)
        assert alert is not None and alert.status == AlertStatus.QUEUED
    assert _run("alerts", "retry").exit_code == 2  # neither ids nor --failed


def test_a_feed_is_overdue_after_two_ticks_and_never_before_two_seconds(settings: Settings) -> None:
    """With a 0.25 s tick, a feed due 1 s ago waits behind busy workers: not a stuck feed."""
    with db.session_scope(settings) as s:
        for n, seconds in ((1, 1.0), (2, 3.0)):
            s.add(_feed(n, state=FeedState.OK, next_check_at=NOW - timedelta(seconds=seconds)))
    fast = settings.model_copy(update={"tick_seconds": 0.25})
    slow = settings.model_copy(update={"tick_seconds": 10.0})
    with db.session_scope(settings) as s:
        assert db_status(s, NOW, fast)["feeds"]["overdue"] == 1  # the one due 3 s ago
        assert db_status(s, NOW, slow)["feeds"]["overdue"] == 0  # two ticks are 20 s
