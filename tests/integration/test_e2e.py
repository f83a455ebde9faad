"""End to end: a real ``feedwatch run`` (Celery worker + embedded beat) against a local feed.

The feed holds the seed article among unrelated items. Exactly one alert (listing both topics)
reaches the JSONL channel for the seed, none for the others; re-polling stores nothing new.
Run on the embedded defaults (SQLite + filesystem broker) and on Redis + PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, create_engine, select
from support.feeds import SEED_TITLE, seed_feed, write_feeds_toml
from support.services import (
    FeedServer,
    Route,
    ServiceProcess,
    feedwatch_cmd,
    postgres_database,
    redis_url,
    service_env,
    wait_for,
)

from feedwatch.models import Alert, Article, Delivery, Match

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(180)]

TOPICS = {"russia_azerbaijan", "armenia_normalization"}


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer().start()
    server.routes["/seed.xml"] = Route(seed_feed())
    yield server
    server.stop()


def _jsonl(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _run_service(tmp_path: Path, server: FeedServer, **env: str) -> None:
    feeds = write_feeds_toml(tmp_path / "feeds.toml", [server.url("/seed.xml")], interval_minutes=0.03)
    home = tmp_path / "home"
    alerts_file = home / "alerts.jsonl"
    proc = ServiceProcess(
        feedwatch_cmd("run", "--concurrency", "2"),
        service_env(home, FEEDWATCH_FEEDS_FILE=str(feeds), **env),
        tmp_path / "service.log",
    )
    try:
        wait_for(lambda: len(_jsonl(alerts_file)) >= 1, 90, "the seed alert in alerts.jsonl", proc)
        # the feed is due again every ~2 s: wait for two more polls, proving they add nothing
        first_hits = server.hits["/seed.xml"]
        wait_for(lambda: server.hits["/seed.xml"] >= first_hits + 2, 60, "two more polls", proc)
    finally:
        proc.stop()
    log = proc.output()
    assert "feed.polled" in log

    lines = _jsonl(alerts_file)
    assert len(lines) == 1, lines
    alert = lines[0]
    assert alert["title"] == SEED_TITLE
    assert set(alert["topics"]) == TOPICS  # type: ignore[arg-type]
    assert alert["topic"] in TOPICS
    assert alert["matched_terms"]
    for key in ("alert_id", "url", "feed", "published_at", "idempotency_key"):
        assert alert[key], key

    db_url = env.get("FEEDWATCH_DATABASE_URL") or f"sqlite:///{home / 'feedwatch.db'}"
    engine = create_engine(db_url)
    with Session(engine) as session:
        articles = session.exec(select(Article)).all()
        assert len(articles) == 4  # re-polls stored nothing twice
        seed = next(a for a in articles if a.title == SEED_TITLE)
        matches = session.exec(select(Match)).all()
        assert {m.topic for m in matches} == TOPICS
        assert all(m.article_id == seed.id for m in matches)
        alerts = session.exec(select(Alert)).all()
        assert [(a.article_id, a.status) for a in alerts] == [(seed.id, "delivered")]
        deliveries = session.exec(select(Delivery)).all()
        assert sorted(d.channel for d in deliveries) == ["console", "jsonl"]
        assert all(d.status == "sent" for d in deliveries)
    engine.dispose()


def test_embedded_defaults(tmp_path: Path, feed_server: FeedServer) -> None:
    _run_service(tmp_path, feed_server)


def test_redis_and_postgres(tmp_path: Path, feed_server: FeedServer) -> None:
    broker = redis_url(12)
    with postgres_database() as db_url:
        _run_service(tmp_path, feed_server, FEEDWATCH_BROKER_URL=broker, FEEDWATCH_DATABASE_URL=db_url)
