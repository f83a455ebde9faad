"""``store.in_list``: ``column IN`` a list given at execution. On PostgreSQL it is
``column = ANY(array)`` with the list as ONE parameter (the statement's text does not grow with
the list, so psycopg converts its placeholders once); on SQLite an expanding ``IN``. Either way
the rows found are exactly those whose value is in the list, empty lists included."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import Session
from support.settings import database_settings

from feedwatch import db, store
from feedwatch.models import Feed

AT = datetime(2026, 11, 30, tzinfo=UTC)
# Keys a hand-made array literal would get wrong: quotes, braces, commas, backslashes, NULL.
KEYS = ['a"b', "{c,d}", "e\\f", "NULL", "g h", "Bakı", *(f"k{i:04d}" for i in range(300))]


def _feed(session: Session, n: int) -> int:
    feed = Feed(config_url=f"http://127.0.0.1/f{n}", url=f"http://127.0.0.1/f{n}", name=f"f{n}")
    session.add(feed)
    session.flush()
    assert feed.id is not None
    return feed.id


def _article(feed_id: int, key: str) -> dict[str, Any]:
    return {
        "identity_key": key,
        "feed_id": feed_id,
        "guid": None,
        "url": None,
        "title": key,
        "summary": "",
        "text": "",
        "author": None,
        "language": None,
        "published_at": AT,
        "published_from_feed": True,
        "fetched_at": AT,
        "content_hash": "0" * 64,
        "flagged": False,
    }


def _store(session: Session) -> tuple[int, int, dict[str, int]]:
    """Two feeds; every key of KEYS stored, the even-numbered ones sighted in the first feed and
    the rest in the second."""
    one, two = _feed(session, 1), _feed(session, 2)
    rows = [_article(one if i % 2 == 0 else two, key) for i, key in enumerate(KEYS)]
    ids = {key: article_id for article_id, key in store.insert_many(session, store._insert_articles, rows)}
    store.add_sightings(session, [(ids[r["identity_key"]], r["feed_id"]) for r in rows], AT)
    return one, two, ids


def test_ids_by_key_finds_exactly_the_stored_keys_asked_for(session: Session) -> None:
    _, _, ids = _store(session)
    asked = [*KEYS[::3], "absent", 'also "absent"']
    assert store.ids_by_key(session, asked) == {key: ids[key] for key in KEYS[::3]}
    assert store.ids_by_key(session, ["absent"]) == {}
    assert store.ids_by_key(session, []) == {}


def test_stored_keys_finds_each_stored_keys_article_and_the_feeds_that_saw_it(session: Session) -> None:
    one, two, ids = _store(session)
    found = store.stored_keys(session, KEYS)
    assert found.asked == frozenset(KEYS) and found.ids == ids
    assert found.seen == {(one, k) for k in KEYS[::2]} | {(two, k) for k in KEYS[1::2]}
    some = [*KEYS[:4], "absent"]
    found = store.stored_keys(session, some)
    assert found.asked == frozenset(some) and found.ids == {k: ids[k] for k in KEYS[:4]}
    assert found.seen == {(one, KEYS[0]), (two, KEYS[1]), (one, KEYS[2]), (two, KEYS[3])}
    assert store.stored_keys(session, ["absent"]) == (frozenset(["absent"]), {}, frozenset())
    assert store.stored_keys(session, []) == store.NO_KEYS


def test_stored_keys_reads_the_feed_that_stored_an_article_and_the_sightings_of_others(
    session: Session,
) -> None:
    """Since round 10 the feed that stored an article has no sighting row: its ``feed_id`` says
    it has seen it. Another feed's sighting is a row, and an article may have several. All
    count; nothing else does."""
    one, two, three = _feed(session, 1), _feed(session, 2), _feed(session, 3)
    rows = [_article(one, key) for key in KEYS[:3]]
    ids = {key: article_id for article_id, key in store.insert_many(session, store._insert_articles, rows)}
    store.add_sightings(session, [(ids[KEYS[1]], two), (ids[KEYS[1]], three), (ids[KEYS[2]], three)], AT)
    found = store.stored_keys(session, KEYS)
    assert found.ids == ids
    assert found.seen == {
        (one, KEYS[0]),
        (one, KEYS[1]),
        (one, KEYS[2]),
        (two, KEYS[1]),
        (three, KEYS[1]),
        (three, KEYS[2]),
    }


def test_feed_columns_reads_the_rows_asked_for_in_id_order(session: Session) -> None:
    ids = [_feed(session, n) for n in range(5)]
    rows = store.feed_columns(session, [ids[3], ids[0], ids[4], 10**9], ("id", "url"))
    assert rows == [
        (ids[0], "http://127.0.0.1/f0"),
        (ids[3], "http://127.0.0.1/f3"),
        (ids[4], "http://127.0.0.1/f4"),
    ]
    assert store.feed_columns(session, [], ("id",)) == []


def test_postgresql_sends_one_statement_text_whatever_the_list_length(tmp_path: Path) -> None:
    with database_settings("postgresql", tmp_path) as settings, db.session_scope(settings) as session:
        _store(session)
        statements: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement)

        event.listen(db.get_engine(settings), "before_cursor_execute", record)
        try:
            for n in (1, 2, 250):
                assert len(store.ids_by_key(session, KEYS[:n])) == n
        finally:
            event.remove(db.get_engine(settings), "before_cursor_execute", record)
        assert len(statements) == 3
        assert len(set(statements)) == 1
        assert "= ANY" in statements[0]
        assert statements[0].count("%(") == 1
        # The array goes in psycopg's binary format: its text format escapes each element in Python.
        assert "= ANY (%(b_ids)b::" in statements[0]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_statement_compiles_for_each_dialect(dialect: str, tmp_path: Path) -> None:
    with database_settings(dialect, tmp_path) as settings:
        text = str(store._STORED.compile(dialect=db.get_engine(settings).dialect))
    # The keys once (one probe of the key's index a key), the sightings a correlated subquery.
    assert text.count("FROM sighting") == 1 and "sighting.article_id = article.id" in text
    if dialect == "postgresql":
        assert text.count("= ANY") == 1 and " IN " not in text and "string_agg(" in text
    else:
        assert text.count(" IN ") == 1 and "ANY" not in text and "= 1" not in text
        assert "group_concat(" in text


def test_only_psycopg_gets_the_binary_placeholder() -> None:
    """``%(name)b`` is psycopg 3's; another PostgreSQL driver keeps the placeholder its dialect
    renders, and a statement rendered with its values inline has none to change."""
    from sqlalchemy.dialects.postgresql import psycopg, psycopg2

    three, two = psycopg.dialect(), psycopg2.dialect()  # type: ignore[no-untyped-call]
    assert "ANY (%(b_ids)b::" in str(store._IDS_BY_KEY.compile(dialect=three))
    assert "ANY (%(b_ids)s" in str(store._IDS_BY_KEY.compile(dialect=two))
    inline = store._IDS_BY_KEY.params(b_ids=["k1", "k2"]).compile(
        dialect=three, compile_kwargs={"literal_binds": True}
    )
    assert "ANY (ARRAY['k1', 'k2'])" in str(inline)
