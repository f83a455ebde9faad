"""A poll batch reads outside a transaction and writes inside one (``db.read_scope``).

The read of a batch's feed rows and the seen-items lookup are one statement each: run in
autocommit, they need no BEGIN and COMMIT (two round trips a read). These tests run the real
``pipeline.poll_feeds`` against a local HTTP server, on SQLite and PostgreSQL, and record for
every statement whether its connection was in autocommit; and they check that a connection
given back by a read is a transactional one again for the next session.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlmodel import select
from support.feeds import item, rss
from support.services import FeedServer, Route
from support.settings import database_settings

from feedwatch import db, pipeline, store
from feedwatch.models import Feed
from feedwatch.settings import Settings
from feedwatch.sources import FeedSpec
from feedwatch.timeutil import utcnow

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    with database_settings(request.param, tmp_path) as s:
        yield s.model_copy(update={"allow_private_networks": True, "per_host_min_gap_seconds": 0.0})


def autocommit(dbapi_connection: Any) -> bool:
    """psycopg's flag; Python 3.11's sqlite3 is in autocommit when its isolation_level is None."""
    flag = getattr(dbapi_connection, "autocommit", None)
    return bool(flag) if isinstance(flag, bool) else dbapi_connection.isolation_level is None


@pytest.fixture
def statements(settings: Settings) -> Iterator[list[tuple[str, bool]]]:
    """(statement, its connection in autocommit) for every statement run."""
    seen: list[tuple[str, bool]] = []
    engine = db.get_engine(settings)

    def before(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append((" ".join(statement.split()), autocommit(conn.connection.dbapi_connection)))

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def feed_body(name: str, titles: list[str]) -> Route:
    links = [f"https://example.org/{name}/{t}" for t in titles]
    return Route(rss([item(link, t, "Text.", link) for link, t in zip(links, titles, strict=True)]))


@pytest.fixture
def row_reads(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """For every read of feed rows (``store.feed_columns``), whether its connection was in
    autocommit. On PostgreSQL that read runs on psycopg's own cursor, which SQLAlchemy's
    statement events do not see."""
    seen: list[bool] = []
    read = store.feed_columns

    def recorded(session: Any, *args: Any) -> Any:
        seen.append(autocommit(session.connection().connection.dbapi_connection))
        return read(session, *args)

    monkeypatch.setattr(store, "feed_columns", recorded)
    return seen


def test_a_poll_reads_in_autocommit_and_writes_in_a_transaction(
    settings: Settings, server: FeedServer, statements: list[tuple[str, bool]], row_reads: list[bool]
) -> None:
    ctx = pipeline.Context(settings, rng=random.Random(3))
    server.routes["/a.xml"] = feed_body("a", ["one", "two"])
    url = server.url("/a.xml")
    with db.session_scope(settings) as session:
        store.sync_feeds(session, [FeedSpec(url=url, interval_minutes=10)], utcnow())
        feed_id = session.exec(select(Feed.id).where(Feed.config_url == url)).one()
    assert feed_id is not None
    assert [r.new for r in pipeline.poll_feeds(ctx, [feed_id])] == [2]
    # The body changes: the second poll parses it, so it also looks up the items seen before.
    server.routes["/a.xml"] = feed_body("a", ["three", "one", "two"])
    statements.clear()
    row_reads.clear()
    reports = pipeline.poll_feeds(ctx, [feed_id])
    assert [(r.outcome, r.new) for r in reports] == [("ok", 1)]
    # The batch's feed rows, and the stored-items lookup (articles by key, with their
    # sightings): one read each, each outside a transaction.
    assert row_reads == [True]
    [seen] = [
        s for s in statements if s[0].startswith("SELECT") and "sighting.article_id = article.id" in s[0]
    ]
    assert seen[1], statements
    writes = [s for s in statements if s[0].startswith(("INSERT", "UPDATE"))]
    assert writes and not any(in_autocommit for _, in_autocommit in writes), statements


def test_a_connection_read_from_is_transactional_again(settings: Settings) -> None:
    """The pool hands the read's connection out again, out of autocommit: a session's writes
    still roll back together."""
    with db.read_scope(settings) as session:
        assert session.execute(select(Feed.id)).all() == []
        read_on = session.connection().connection.dbapi_connection
        assert autocommit(read_on)
    with pytest.raises(RuntimeError), db.session_scope(settings) as session:
        assert session.connection().connection.dbapi_connection is read_on
        assert not autocommit(read_on)
        store.sync_feeds(session, [FeedSpec(url="https://example.org/x.xml", interval_minutes=10)], utcnow())
        raise RuntimeError("roll back")
    with db.session_scope(settings) as session:
        assert session.execute(text("SELECT count(*) FROM feed")).scalar() == 0
    assert db.get_engine(settings).pool.checkedout() == 0
