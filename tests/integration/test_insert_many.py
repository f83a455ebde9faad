"""``store.insert_many``: on PostgreSQL a chunk of rows is one JSON parameter read back with
``json_to_recordset``; on SQLite it is SQLAlchemy's executemany. Either way every value comes
back as it was given, in the order given, with the rows ``RETURNING`` names, and a conflicting
row is skipped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import Session, select
from support.settings import database_settings

from feedwatch import db, store
from feedwatch.models import Alert, Article, Feed, Match

# Text that a hand-made escaping would get wrong: quotes, backslashes, braces (array syntax),
# newlines and tabs, non-ASCII in four scripts, an emoji, and JSON-looking text.
AWKWARD = [
    'He said "Baku", then \\"Yerevan\\" \\ {a,b} [1, 2]',
    "line one\nline two\ttabbed\r\n",
    "Азәрбајҹан — Ереван — Բաքու — Bakı 🇦🇿",
    '{"not": "json", "but": [1, 2]}',
    "",
    "NULL",
]


@pytest.fixture
def feed_id(session: Session) -> int:
    feed = Feed(config_url="http://127.0.0.1/f", url="http://127.0.0.1/f", name="f")
    session.add(feed)
    session.flush()
    assert feed.id is not None
    return feed.id


def _article(feed_id: int, i: int, text: str, at: datetime) -> dict[str, Any]:
    return {
        "identity_key": f"key-{i:03d}",
        "feed_id": feed_id,
        "guid": None if i % 3 == 0 else f"guid {text}",
        "url": f'http://127.0.0.1/news/{i}?a=1&b="2"',
        "title": text,
        "summary": text * 2,
        "text": text * 3,
        "author": None if i % 2 else text,
        "language": ["en", "ru", "az", "hy", None][i % 5],
        "published_at": at,
        "published_from_feed": i % 2 == 0,
        "fetched_at": at + timedelta(microseconds=i),
        "content_hash": f"{i:064d}",
        "flagged": i % 4 == 0,
    }


def test_every_value_comes_back_as_given_in_the_order_given(
    session: Session, feed_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "INSERT_CHUNK", 4)  # several chunks, the last one short
    at = datetime(2026, 11, 30, 9, 15, 42, 123456, tzinfo=UTC)
    rows = [_article(feed_id, i, AWKWARD[i % len(AWKWARD)], at) for i in range(11)]
    back = store.insert_many(session, store._insert_articles, rows)
    assert [key for _, key in back] == [r["identity_key"] for r in rows]
    assert [article_id for article_id, _ in back] == sorted(article_id for article_id, _ in back)
    stored = {a.identity_key: a for a in session.exec(select(Article)).all()}
    for row in rows:
        article = stored[row["identity_key"]]
        assert {name: getattr(article, name) for name in row} == row
        assert article.full_text_attempts == 0  # the column's default, as for a VALUES insert


def test_a_conflicting_row_is_skipped_and_not_returned(session: Session, feed_id: int) -> None:
    at = datetime(2026, 11, 30, tzinfo=UTC)
    first = store.insert_many(session, store._insert_articles, [_article(feed_id, 1, "first", at)])
    assert len(first) == 1
    rows = [
        _article(feed_id, 2, "new", at),
        _article(feed_id, 1, "again", at),
        _article(feed_id, 2, "twice", at),
    ]
    back = store.insert_many(session, store._insert_articles, rows)
    assert [key for _, key in back] == ["key-002"]
    titles = {a.identity_key: a.title for a in session.exec(select(Article)).all()}
    assert titles == {"key-001": "first", "key-002": "new"}  # the first of each key wins


def test_json_columns_keep_their_nesting(session: Session, feed_id: int) -> None:
    at = datetime(2026, 11, 30, tzinfo=UTC)
    (article_id, _), *_ = store.insert_many(session, store._insert_articles, [_article(feed_id, 5, "x", at)])
    explanation = {
        "fields": {"title": ["Баку", 'say "hi"']},
        "score": 0.1 + 0.2,
        "none": None,
        "n": [1, [2, 3]],
    }
    minhash = [0, 1, 2**32 - 1, 4_294_967_295, 123_456_789]
    store.insert_many(
        session,
        store._insert_matches,
        [
            {
                "article_id": article_id,
                "topic": "russia_azerbaijan",
                "score": 2.5,
                "terms": ["Россия", "Azərbaycan", 'a "b"'],
                "snippet": AWKWARD[0],
                "explanation": explanation,
                "stage": "feed",
                "created_at": at,
            }
        ],
    )
    created = store.create_alerts(session, [(article_id, ["russia_azerbaijan"], minhash)], at)
    match = session.exec(select(Match)).one()
    assert match.terms == ["Россия", "Azərbaycan", 'a "b"']
    assert match.explanation == explanation
    assert match.snippet == AWKWARD[0]
    alert = session.exec(select(Alert)).one()
    assert created == {article_id: alert.id}
    assert alert.minhash == minhash and alert.topics == ["russia_azerbaijan"]


def test_datetimes_are_stored_as_utc_and_naive_ones_are_refused(session: Session, feed_id: int) -> None:
    plus_four = datetime(2026, 11, 30, 13, 0, tzinfo=timezone(timedelta(hours=4)))  # Baku time
    store.insert_many(session, store._insert_articles, [_article(feed_id, 7, "x", plus_four)])
    article = session.exec(select(Article)).one()
    assert article.published_at == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert article.published_at.utcoffset() == timedelta(0)
    naive = _article(feed_id, 8, "x", datetime(2026, 11, 30, 9, 0))
    with pytest.raises(Exception, match="timezone information"):
        store.insert_many(session, store._insert_articles, [naive])


def test_a_row_with_other_columns_is_refused(session: Session, feed_id: int) -> None:
    at = datetime(2026, 11, 30, tzinfo=UTC)
    short = _article(feed_id, 2, "x", at)
    del short["author"]
    renamed = _article(feed_id, 3, "x", at)
    renamed["writer"] = renamed.pop("author")  # as many keys, one of them wrong
    for odd in (short, renamed):
        with pytest.raises(ValueError, match="exactly the columns"):
            store.insert_many(session, store._insert_articles, [_article(feed_id, 1, "x", at), odd])


def test_postgresql_sends_one_statement_text_per_chunk_size_of_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The statement does not grow with its rows: psycopg converts its placeholders once, where
    an ``INSERT … VALUES`` of 200 rows had 3,000 to convert on every statement."""
    monkeypatch.setattr(store, "INSERT_CHUNK", 3)
    at = datetime(2026, 11, 30, tzinfo=UTC)
    with database_settings("postgresql", tmp_path) as settings, db.session_scope(settings) as session:
        feed = Feed(config_url="http://127.0.0.1/f", url="http://127.0.0.1/f", name="f")
        session.add(feed)
        session.flush()
        assert feed.id is not None
        statements: list[tuple[str, Any]] = []

        def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            statements.append((statement, parameters))

        event.listen(db.get_engine(settings), "before_cursor_execute", record)
        try:
            back = store.insert_many(
                session, store._insert_articles, [_article(feed.id, i, "x", at) for i in range(7)]
            )
        finally:
            event.remove(db.get_engine(settings), "before_cursor_execute", record)
        assert len(back) == 7
        assert len(statements) == 3  # 3 + 3 + 1 rows
        assert len({text for text, _ in statements}) == 1
        assert "json_to_recordset" in statements[0][0]
        assert statements[0][0].count("%(") == 2  # the rows, and the column default
