"""A poll batch's read of its feed rows gives the values SQLAlchemy gives (``store.feed_columns``).

On PostgreSQL the read runs on psycopg's own cursor with its rows in binary, for speed (round 33
in docs/performance-history.md); on SQLite it goes through SQLAlchemy. These tests fill every
column the read returns, poll a real feed so its state is what a poll leaves (validators,
history, fingerprints, item spans), and hold the fast read to SQLAlchemy's own result of the
same SELECT: the same values, the same types, every timestamp in ``datetime.UTC`` — also from a
session set to another zone, where psycopg hands the timestamps out in that zone.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import select
from support.feeds import item, rss
from support.services import FeedServer, Route
from support.settings import database_settings

from feedwatch import db, feedstate, pipeline, store
from feedwatch.models import Feed
from feedwatch.settings import Settings
from feedwatch.sources import FeedSpec
from feedwatch.timeutil import utcnow

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

COLUMNS = (*feedstate.COLUMNS, *feedstate._TARGET_ONLY)


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    with database_settings(request.param, tmp_path) as s:
        yield s.model_copy(update={"allow_private_networks": True, "per_host_min_gap_seconds": 0.0})


def feeds(settings: Settings, server: FeedServer) -> list[int]:
    """Two feeds: one polled (the state a poll leaves) with every other column set too, one as
    synced (its nullable columns null)."""
    links = [f"https://example.org/a/{n}" for n in range(5)]
    server.routes["/a.xml"] = Route(
        rss([item(link, f"Title {n}", "Text.", link) for n, link in enumerate(links)]),
        etag='"v1"',
        headers={"Last-Modified": "Tue, 01 Dec 2026 10:00:00 GMT"},
    )
    urls = [server.url("/a.xml"), server.url("/b.xml")]
    now = utcnow()
    with db.session_scope(settings) as session:
        store.sync_feeds(session, [FeedSpec(url=u, interval_minutes=10) for u in urls], now)
        ids = [session.exec(select(Feed.id).where(Feed.config_url == u)).one() for u in urls]
    assert all(i is not None for i in ids)
    [report] = pipeline.poll_feeds(pipeline.Context(settings, rng=random.Random(5)), [ids[0]])
    assert report.new == 5
    with db.session_scope(settings) as session:
        feed = session.get(Feed, ids[0])
        assert feed is not None and feed.item_spans and feed.entry_fingerprints and feed.etag
        feed.claimed_at = now + timedelta(seconds=1)
        feed.last_error_at = now - timedelta(days=1)
        feed.error_class, feed.error_message, feed.total_errors = "timeout", "slow", 3
        feed.redirect_candidate, feed.redirect_count = "https://example.org/moved", 1
        feed.redirect_history = [{"at": now.isoformat(), "chain": [[301, "a", "b"]]}]
        feed.websub_hub, feed.websub_topic, feed.websub_state = "https://hub.example", "t", "subscribed"
        feed.websub_lease_until = now + timedelta(days=2)
        feed.websub_last_push_at = now - timedelta(hours=1)
        session.add(feed)
    return [int(i) for i in ids if i is not None]


def through_sqlalchemy(session: Any, ids: list[int]) -> list[tuple[Any, ...]]:
    result = session.connection().execute(store._feed_select(COLUMNS), {"b_ids": ids})
    return [tuple(row) for row in result.all()]


def assert_same(fast: list[tuple[Any, ...]], slow: list[tuple[Any, ...]]) -> None:
    assert len(fast) == len(slow) == 2
    for fast_row, slow_row in zip(fast, slow, strict=True):
        for name, a, b in zip(COLUMNS, fast_row, slow_row, strict=True):
            assert (type(a), a) == (type(b), b), name
            if hasattr(a, "tzinfo"):
                assert a.tzinfo is UTC and b.tzinfo is UTC, name


def test_the_batch_read_gives_what_sqlalchemy_gives(settings: Settings, server: FeedServer) -> None:
    ids = feeds(settings, server)
    with db.read_scope(settings) as session:
        fast = store.feed_columns(session, ids, COLUMNS)
        slow = through_sqlalchemy(session, ids)
    assert_same(fast, slow)
    assert [row[COLUMNS.index("id")] for row in fast] == sorted(ids)
    with db.read_scope(settings) as session:
        assert store.feed_columns(session, [], COLUMNS) == []


def test_timestamps_come_back_in_utc_from_a_session_in_another_zone(
    settings: Settings, server: FeedServer
) -> None:
    if db.get_engine(settings).dialect.name != "postgresql":
        pytest.skip("PostgreSQL sessions have a zone; SQLite's do not")
    ids = feeds(settings, server)
    with db.session_scope(settings) as session:
        connection = session.connection()
        # The engine sets every session to UTC (db._utc_session), so psycopg's timestamps are
        # datetime.UTC as they come.
        assert connection.execute(text("SHOW TIME ZONE")).scalar() == "UTC"
        connection.execute(text("SET LOCAL TIME ZONE 'Asia/Baku'"))
        fast = store.feed_columns(session, ids, COLUMNS)
        slow = through_sqlalchemy(session, ids)
    assert_same(fast, slow)
