"""``store.insert_many``: on PostgreSQL a chunk of rows is one JSON parameter read back with
``json_to_recordset``; on SQLite it is SQLAlchemy's executemany. Either way every value comes
back as it was given, in the order given, with the rows ``RETURNING`` names, and a conflicting
row is skipped.

``store.copy_rows``, PostgreSQL's binary ``COPY`` of a batch's new articles and of its flagged
articles' matches, alerts and story keys: every value stored as the ``INSERT`` stores it, ids in
the order given, and a row stored already (by another transaction since the caller's lookup, or
an article's alert or topic met again) stores nothing and leaves the transaction usable for the
``INSERT … ON CONFLICT`` fallback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlmodel import Session, select
from support.settings import database_settings
from support.stories import draft

from feedwatch import db, store, stories
from feedwatch.models import Alert, Article, Feed, Match, StoryKeys
from feedwatch.rules import TopicMatch
from feedwatch.rules.model import Hit

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


def _feed(session: Session) -> int:
    feed = Feed(config_url="http://127.0.0.1/f", url="http://127.0.0.1/f", name="f")
    session.add(feed)
    session.flush()
    assert feed.id is not None
    return feed.id


@pytest.fixture
def feed_id(session: Session) -> int:
    return _feed(session)


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
        feed_id = _feed(session)
        statements: list[tuple[str, Any]] = []

        def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            statements.append((statement, parameters))

        event.listen(db.get_engine(settings), "before_cursor_execute", record)
        try:
            back = store.insert_many(
                session, store._insert_articles, [_article(feed_id, i, "x", at) for i in range(7)]
            )
        finally:
            event.remove(db.get_engine(settings), "before_cursor_execute", record)
        assert len(back) == 7
        assert len(statements) == 3  # 3 + 3 + 1 rows
        assert len({text for text, _ in statements}) == 1
        assert "json_to_recordset" in statements[0][0]
        assert statements[0][0].count("%(") == 2  # the rows, and the column default


BAKU = timezone(timedelta(hours=4))


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Any]:
    with database_settings("postgresql", tmp_path) as s:
        yield s


def _columns(article: Article) -> dict[str, Any]:
    names = [c.name for c in Article.__table__.columns]  # type: ignore[attr-defined]
    return {name: getattr(article, name) for name in names if name not in ("id", "identity_key")}


def test_copied_rows_store_what_the_insert_stores(settings: Any) -> None:
    at = datetime(2026, 11, 30, 13, 15, 42, 123456, tzinfo=BAKU)
    with db.session_scope(settings) as session:
        feed_id = _feed(session)
        inserted = [_article(feed_id, i, AWKWARD[i % len(AWKWARD)], at) for i in range(12)]
        copied = [{**row, "identity_key": f"copy-{i:03d}"} for i, row in enumerate(inserted)]
        store.insert_many(session, store._insert_articles, inserted)
        values = [tuple(row[name] for name in store._ARTICLE_COLUMNS) for row in copied]
        ids = store.copy_rows(session, Article, store._ARTICLE_COLUMNS, iter(values), len(values))
    with db.session_scope(settings) as session:
        stored = {a.identity_key: a for a in session.exec(select(Article)).all()}
    assert ids == [stored[row["identity_key"]].id for row in copied]
    assert ids == sorted(ids)
    for i in range(12):
        by_copy, by_insert = stored[f"copy-{i:03d}"], stored[f"key-{i:03d}"]
        assert _columns(by_copy) == _columns(by_insert)
        assert by_copy.published_at == at.astimezone(UTC)
        assert by_copy.full_text_attempts == 0  # the column's Python-side default, as the INSERT gives it


def test_a_key_stored_since_the_lookup_falls_back_to_the_insert(settings: Any) -> None:
    """Another transaction stored one of the batch's keys after the lookup: the ``COPY`` stores
    none of the batch, and the ``INSERT … ON CONFLICT`` stores the rest in the same transaction."""
    now = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    with db.session_scope(settings) as other:
        feed_id = _feed(other)
        store.insert_articles(other, [(feed_id, draft("b", "theirs"))], now, set())
    with db.session_scope(settings) as session:
        drafts = [(feed_id, draft(key, "mine")) for key in ("a", "b", "c")]
        values = (store._article_values(f, d, now, set()) for f, d in drafts)
        assert store.copy_rows(session, Article, store._ARTICLE_COLUMNS, values, 3) is None
        assert session.exec(select(Article.identity_key)).all() == ["b"]  # the COPY left nothing
        got = store.insert_articles(session, drafts, now, {"c"})
        assert sorted(got) == ["a", "c"]
    with db.session_scope(settings) as session:
        stored = {a.identity_key: a for a in session.exec(select(Article)).all()}
    assert {k: (a.title, a.flagged) for k, a in stored.items()} == {
        "a": ("mine", False),
        "b": ("theirs", False),
        "c": ("mine", True),
    }
    assert got == {"a": stored["a"].id, "c": stored["c"].id}


def test_other_errors_are_not_taken_for_a_conflict(settings: Any) -> None:
    now = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    with db.session_scope(settings) as session:
        feed_id = _feed(session)
        row = store._article_values(feed_id, draft("a", "x"), now, set())
        naive = (*row[:11], datetime(2026, 11, 30, 10, 0), *row[12:])  # fetched_at without a zone
        with pytest.raises(Exception, match=r"(?i)time ?zone|tzinfo|naive"):
            store.copy_rows(session, Article, store._ARTICLE_COLUMNS, [naive], 1)
        session.rollback()
        missing = (row[0], 999_999, *row[2:])  # no such feed: the foreign key
        with pytest.raises(Exception, match="foreign key"):
            store.copy_rows(session, Article, store._ARTICLE_COLUMNS, [missing], 1)


def test_a_left_out_column_with_a_computed_default_is_refused(settings: Any) -> None:
    names = tuple(n for n in store._ARTICLE_COLUMNS if n != "fetched_at")  # default: utcnow()
    with db.session_scope(settings) as session:
        feed_id = _feed(session)
        row = store._article_values(
            feed_id, draft("a", "x"), datetime(2026, 11, 30, 10, 0, tzinfo=UTC), set()
        )
        with pytest.raises(ValueError, match="fetched_at"):
            store.copy_rows(session, Article, names, [row[:11] + row[12:]], 1)


def test_insert_articles_returns_each_copied_keys_id(settings: Any) -> None:
    now = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    with db.session_scope(settings) as session:
        feed_id = _feed(session)
        drafts = [(feed_id, draft(f"k{i}", f"title {i}")) for i in range(5)]
        got = store.insert_articles(session, drafts, now, {"k3"})
    with db.session_scope(settings) as session:
        stored = session.exec(select(Article)).all()
    assert got == {a.identity_key: a.id for a in stored}
    assert {a.identity_key: (a.title, a.flagged) for a in stored} == {
        f"k{i}": (f"title {i}", i == 3) for i in range(5)
    }


def _match(topic: str, text: str) -> TopicMatch:
    return TopicMatch(
        topic=topic,
        score=1.25,
        terms=[text, "Bakı"],
        hits=[Hit(text, "title", 0, 4, 0.5)],
        snippet=text,
        threshold=1.0,
        clauses=["both"],
        groups={"countries": 1.0, "talks": 0.25},
    )


def _flagged_rows(
    session: Session,
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    matches = session.exec(select(Match).order_by(Match.article_id, Match.topic)).all()
    # The JSON columns' stored text as well as its values: written by the engine's serializer.
    texts = session.execute(
        text("SELECT terms::text, explanation::text FROM match ORDER BY article_id, topic")
    ).all()
    alerts = session.exec(select(Alert).order_by(Alert.article_id)).all()
    keys = session.exec(select(StoryKeys).order_by(StoryKeys.alert_id)).all()
    return (
        [
            (
                m.article_id,
                m.topic,
                m.score,
                m.terms,
                m.snippet,
                m.explanation,
                m.stage,
                m.created_at,
                *stored,
            )
            for m, stored in zip(matches, texts, strict=True)
        ],
        [
            (a.article_id, a.id, a.topics, a.status, a.attempts, a.minhash, a.created_at, a.queued_at)
            for a in alerts
        ],
        [(k.alert_id, k.band_keys, k.created_at) for k in keys],
    )


def _store_flagged(settings: Any, copy: bool) -> tuple[list[Any], list[Any], list[Any], dict[int, int]]:
    """Three flagged articles' matches, alerts and story keys, by ``COPY`` or (``copy`` False)
    by the ``INSERT`` alone; what the tables hold then, and what ``create_alerts`` returned."""
    now = datetime(2026, 11, 30, 10, 0, 5, 250000, tzinfo=UTC)
    with db.session_scope(settings) as session:
        feed_id = _feed(session)
        drafts = [(feed_id, draft(f"k{i}", AWKWARD[i])) for i in range(3)]
        ids = store.insert_articles(session, drafts, now, {"k0", "k1", "k2"})
        articles = [ids[f"k{i}"] for i in range(3)]
        texts = AWKWARD[:3]
        real = store.copy_rows
        if not copy:
            store.copy_rows = lambda *args: None  # type: ignore[assignment,misc]
        try:
            store.insert_matches(
                session,
                [
                    (a, [_match("russia_azerbaijan", t), _match("armenia_azerbaijan", t)])
                    for a, t in zip(articles, texts, strict=True)
                ],
                now,
                stage="feed",
            )
            sigs = stories.signatures([(t, t * 3) for t in texts])
            created = store.create_alerts(
                session,
                [(a, ["russia_azerbaijan"], sig.hashvalues) for a, sig in zip(articles, sigs, strict=True)],
                now,
            )
            stories.record_keys(
                session, [(created[a], sig) for a, sig in zip(articles, sigs, strict=True)], now
            )
        finally:
            store.copy_rows = real  # type: ignore[method-assign]
    with db.session_scope(settings) as session:
        return (*_flagged_rows(session), created)


def test_flagged_rows_copied_store_what_the_insert_stores(tmp_path: Path) -> None:
    """The matches (JSON explanations, terms in four scripts), the alerts (ids returned per
    article) and the story keys: the same values by ``COPY`` as by the ``INSERT``."""
    results = []
    for copy in (True, False):
        with database_settings("postgresql", tmp_path) as settings:
            results.append(_store_flagged(settings, copy))
    (matches, alerts, keys, created), (matches_i, alerts_i, keys_i, created_i) = results
    assert matches == matches_i and len(matches) == 6
    assert matches[0][5]["groups"] == {"countries": 1.0, "talks": 0.25}
    assert matches[1][3] == [AWKWARD[0], "Bakı"]
    assert alerts == alerts_i and len(alerts) == 3
    assert keys == keys_i and len(keys) == 3 and all(len(k[1]) >= 20 for k in keys)
    assert created == created_i == {article_id: alert_id for article_id, alert_id, *_ in alerts}


def test_a_flagged_row_met_again_falls_back_to_the_insert(settings: Any) -> None:
    """An article with an alert already, a topic stored already (the full-text stage meets an
    article again): the ``COPY`` stores nothing, the ``INSERT … ON CONFLICT`` the rest, and the
    stored rows are left as they were."""
    now = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    later = now + timedelta(hours=1)
    with db.session_scope(settings) as session:
        feed_id = _feed(session)
        ids = store.insert_articles(session, [(feed_id, draft(k, k)) for k in ("a", "b")], now, {"a", "b"})
        store.insert_matches(session, [(ids["a"], [_match("russia_azerbaijan", "first")])], now, stage="feed")
        first = store.create_alerts(session, [(ids["a"], ["russia_azerbaijan"], [1, 2])], now)
    with db.session_scope(settings) as session:
        store.insert_matches(
            session,
            [(ids["a"], [_match("russia_azerbaijan", "again"), _match("armenia_azerbaijan", "new")])],
            later,
            stage="full_text",
        )
        created = store.create_alerts(
            session, [(ids["a"], ["armenia_azerbaijan"], [3]), (ids["b"], ["russia_azerbaijan"], [4])], later
        )
    with db.session_scope(settings) as session:
        matches, alerts, _ = _flagged_rows(session)
    assert [(m[1], m[4], m[6]) for m in matches] == [
        ("armenia_azerbaijan", "new", "full_text"),
        ("russia_azerbaijan", "first", "feed"),
    ]
    assert list(created) == [ids["b"]]
    assert [(a[0], a[1], a[2]) for a in alerts] == [
        (ids["a"], first[ids["a"]], ["russia_azerbaijan"]),
        (ids["b"], created[ids["b"]], ["russia_azerbaijan"]),
    ]


def test_rows_that_carry_their_key_draw_no_ids(settings: Any) -> None:
    """Story keys name their alert: no id is drawn, and a key stored already is a conflict."""
    now = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    with db.session_scope(settings) as session:
        feed_id = _feed(session)
        ids = store.insert_articles(session, [(feed_id, draft("a", "a"))], now, {"a"})
        alert_id = store.create_alerts(session, [(ids["a"], ["russia_azerbaijan"], [1])], now)[ids["a"]]
        names = ("alert_id", "band_keys", "created_at")
        assert store.copy_rows(session, StoryKeys, names, [(alert_id, ["0:ab", "t:cd"], now)], 1) == []
        assert store.copy_rows(session, StoryKeys, names, [(alert_id, ["1:ef"], now)], 1) is None
        stored = session.exec(select(StoryKeys)).all()
    assert [(k.alert_id, k.band_keys) for k in stored] == [(alert_id, ["0:ab", "t:cd"])]


def test_no_rows_copy_nothing_without_a_statement(session: Session) -> None:
    """A batch without flagged articles asks for no matches, alerts or keys: no statement at
    all, on either database (not even the catalog reads of a first plan)."""
    statements: list[str] = []

    def spy(*args: Any) -> None:
        statements.append(args[2])

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", spy)
    try:
        assert store.copy_rows(session, Match, store._MATCH_COLUMNS, [], 0) == []
        store.insert_matches(session, [], datetime(2026, 11, 30, 10, 0, tzinfo=UTC), stage="feed")
        assert store.create_alerts(session, [], datetime(2026, 11, 30, 10, 0, tzinfo=UTC)) == {}
    finally:
        event.remove(engine, "before_cursor_execute", spy)
    assert statements == []
