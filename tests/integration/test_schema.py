"""The migrations build the schema the models declare: no table, column or index missing or extra
(the types' spelling aside), on SQLite and PostgreSQL."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel
from support.settings import database_settings

from feedwatch import db
from feedwatch.models import declared_on  # (importing the models registers the tables)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migrations_match_the_models(kind: str, tmp_path: Path) -> None:
    """An index the models declare for one dialect (``ddl_if``) is compared there only, as the
    migrations' environment compares it."""
    with database_settings(kind, tmp_path) as settings, db.get_engine(settings).connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "include_object": lambda item, _name, what, reflected, _other: (
                    reflected or what != "index" or declared_on(item, kind)
                )
            },
        )
        diffs = compare_metadata(context, SQLModel.metadata)
    structural = [d for d in diffs if isinstance(d, tuple) and d[0].startswith(("add_", "remove_"))]
    assert structural == []


def test_postgresql_compresses_the_columns_written_on_every_poll_with_lz4(tmp_path: Path) -> None:
    """Migration 0005: where the server has lz4, the large columns written on every poll or
    insert use it (a catalog setting: the schema comparison above cannot see it)."""
    from sqlalchemy import text

    with database_settings("postgresql", tmp_path) as settings, db.get_engine(settings).connect() as conn:
        lz4 = conn.execute(
            text("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
        ).scalar()
        if not lz4:
            pytest.skip("this PostgreSQL was built without lz4")
        rows = conn.execute(
            text(
                "SELECT c.relname, a.attname, a.attcompression FROM pg_attribute a"
                " JOIN pg_class c ON c.oid = a.attrelid"
                " WHERE (c.relname, a.attname) IN (('feed', 'poll_history'), ('article', 'summary'),"
                " ('article', 'text'), ('article', 'full_text'), ('article', 'title'))"
            )
        ).all()
    assert {(t, c): m for t, c, m in rows} == {
        ("feed", "poll_history"): "l",
        ("article", "summary"): "l",
        ("article", "text"): "l",
        ("article", "full_text"): "l",
        ("article", "title"): "",  # the default, left alone
    }


def test_a_generic_plan_of_a_delivery_update_reads_by_alert_even_on_a_new_table(tmp_path: Path) -> None:
    """Migrations 0006 and 0013: the statements that name deliveries by alert and channel are
    served by an ``alert_id`` index, in the generic plan PostgreSQL caches for a prepared
    statement, even one made while the table held a few rows and had never been analyzed. With
    the rate-limit index led by ``channel`` such a plan read every delivery of the channel on
    each call, and kept doing so as the table grew; with ``channel`` second, a bitmap scan still
    took it as its condition at 300 rows; on ``claimed_at`` alone the index offers them
    nothing. Planned at 5 rows and at 300 (``support.plans.grow``)."""
    from sqlalchemy import text
    from support.plans import grow

    plans = {}
    with database_settings("postgresql", tmp_path) as settings, db.get_engine(settings).connect() as conn:
        for size in grow(conn, (5, 300)):
            conn.execute(text("SET plan_cache_mode = force_generic_plan"))
            for name, where, args in (
                ("many", "alert_id = ANY($1::integer[]) AND channel = $2", "('{1,2}', 'jsonl')"),
                ("one", "alert_id = $1::integer AND channel = $2", "(1, 'jsonl')"),
            ):
                conn.execute(text(f"PREPARE {name} AS UPDATE delivery SET status = 'sent' WHERE {where}"))
                explained = conn.execute(text(f"EXPLAIN EXECUTE {name}{args}"))
                plans[name, size] = "\n".join(row[0] for row in explained)
                conn.execute(text(f"DEALLOCATE {name}"))
            conn.execute(text("RESET plan_cache_mode"))
    assert len(plans) == 4
    for (name, size), plan in plans.items():
        assert "ix_delivery_claimed" not in plan, (name, size, plan)
        if size == 5:  # at 300 rows reading the three pages whole is PostgreSQL's right choice
            assert "alert_id" in plan.split("Filter")[0], (name, plan)  # the index condition, not a filter


def test_hash_keys_compare_bytes_and_their_lookups_use_their_indexes(tmp_path: Path) -> None:
    """Migration 0007: the article's identity key and the story band key are in the "C"
    collation on PostgreSQL, and the statements the service looks them up with (an ``= ANY``
    array, as ``store.in_list`` binds it) still read them through their indexes."""
    from sqlalchemy import text

    with database_settings("postgresql", tmp_path) as settings, db.get_engine(settings).connect() as conn:
        collations = conn.execute(
            text(
                "SELECT table_name, column_name, collation_name FROM information_schema.columns"
                " WHERE (table_name, column_name) IN (('article', 'identity_key'), ('storyband', 'key'))"
            )
        ).all()
        conn.execute(text("SET enable_seqscan = off"))  # empty tables: ask whether an index can serve
        plans = {
            table: "\n".join(
                row[0]
                for row in conn.execute(
                    text(f"EXPLAIN SELECT id FROM {table} WHERE {column} = ANY(CAST(:keys AS varchar[]))"),
                    {"keys": ["a", "b"]},
                )
            )
            for table, column in (("article", "identity_key"), ("storyband", "key"))
        }
    assert sorted(collations) == [("article", "identity_key", "C"), ("storyband", "key", "C")]
    assert "article_identity_key_key" in plans["article"], plans["article"]
    assert "ix_storyband_key_created" in plans["storyband"], plans["storyband"]


def test_the_story_lookup_reads_the_gin_index_of_the_keys(tmp_path: Path) -> None:
    """Migration 0011: a story's keys are one array in the "C" collation under a GIN index, and the
    service's lookup (``stories._STORIES_BY_SIGNATURE``, a scan of the index a signature) reads
    them through that index, also as a generic plan."""
    from sqlalchemy import text

    from feedwatch import stories

    with database_settings("postgresql", tmp_path) as settings, db.get_engine(settings).connect() as conn:
        (collation,) = conn.execute(
            text(
                "SELECT attcollation::regcollation::text FROM pg_attribute"
                " WHERE attrelid = 'storykeys'::regclass AND attname = 'band_keys'"
            )
        ).one()
        conn.execute(text("SET enable_seqscan = off"))  # an empty table: ask whether the index can serve
        conn.execute(text("SET plan_cache_mode = force_generic_plan"))
        lookup = str(stories._STORIES_BY_SIGNATURE.compile(conn))
        raw = conn.connection.dbapi_connection
        assert raw is not None
        with raw.cursor() as cursor:
            cursor.execute(f"EXPLAIN {lookup}", {"b_sigs": ["1:ab,t:cd"], "b_since": NOW}, prepare=True)
            plan = "\n".join(row[0] for row in cursor.fetchall())
    assert collation == '"C"'
    assert "ix_storykeys_band_keys" in plan, plan


def _stories(conn: Any, count: int, window_from: int = 1) -> None:
    """``count`` alerted articles with stories of 21 distinct keys each; the stories from
    ``window_from`` on made at ``NOW``, the ones before it three days earlier; analyzed."""
    from sqlalchemy import text

    _alerted_articles(conn, count)
    conn.execute(
        text(
            "INSERT INTO storykeys (alert_id, band_keys, created_at)"
            " SELECT n, ARRAY(SELECT md5(n || ':' || b) || md5(b || ':' || n)"
            " FROM generate_series(1, 21) AS b),"
            " CASE WHEN n >= :from THEN :at ELSE :old END FROM generate_series(1, :count) AS n"
        ),
        {"at": NOW, "old": NOW - timedelta(hours=72), "from": window_from, "count": count},
    )
    conn.execute(text("ANALYZE storykeys"))


def _plan_and_find(conn: Any, sigs: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """The story lookup's plan made with its values in hand (as a connection's first runs are),
    and what it finds: (signature number, alert id) pairs, the window 48 hours to ``NOW``."""
    from feedwatch import stories

    lookup = str(stories._STORIES_BY_SIGNATURE.compile(conn))
    params = {"b_sigs": sigs, "b_since": NOW - timedelta(hours=48)}
    raw = conn.connection.dbapi_connection
    assert raw is not None
    with raw.cursor() as cursor:
        cursor.execute(f"EXPLAIN {lookup}", params, prepare=False)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute(lookup, params, prepare=False)
        return plan, [(n, alert_id) for n, alert_id, _ in cursor.fetchall()]


def test_the_story_lookup_reads_the_gin_index_when_planned_with_its_keys(tmp_path: Path) -> None:
    """A plan made with the keys in hand (a connection's first runs of the lookup) reads the
    index too. Shown the keys, PostgreSQL guesses that 0.5 % of the stories hold each (hashes have
    no most-common elements), here that most of them match, and would scan the table comparing
    every key of every story with every key looked up: seconds at a few thousand keys and stories.
    The lookup's keys reach the planner only as a column of its outer rows (one a signature), so
    no plan sees them: nine signatures' keys that match no story here, then story 7's own."""
    from sqlalchemy import text

    with database_settings("postgresql", tmp_path) as settings, db.get_engine(settings).begin() as conn:
        _stories(conn, 1000)
        keys = [f"{n:064x}" for n in range(189)] + list(
            conn.execute(text("SELECT band_keys FROM storykeys WHERE alert_id = 7")).scalar_one()
        )
        sigs = [",".join(keys[n : n + 21]) for n in range(0, len(keys), 21)]
        plan, found = _plan_and_find(conn, sigs)
    assert "ix_storykeys_band_keys" in plan, plan
    assert "Seq Scan on storykeys" not in plan, plan
    assert found == [(len(sigs), 7)]


def test_the_story_lookup_scans_a_signature_at_a_time_when_few_stories_are_in_the_window(
    tmp_path: Path,
) -> None:
    """Round 59: where PostgreSQL expects few stories in the window (most of them older, as
    before the upkeep prunes them), the lookup still scans the GIN index once a signature. Its
    inner query is kept apart (``OFFSET 0``); pulled up into a join, the planner read the
    table whole, kept the window's stories and compared each with each signature instead (3.6 s
    a batch of 77 over 52,577 stories). The plan made with the values in hand, as a
    connection's first runs are."""
    from sqlalchemy import text

    with database_settings("postgresql", tmp_path) as settings, db.get_engine(settings).begin() as conn:
        _stories(conn, 3000, window_from=2991)
        rows = conn.execute(text("SELECT band_keys FROM storykeys WHERE alert_id > 2990 ORDER BY alert_id"))
        plan, found = _plan_and_find(conn, [",".join(keys) for (keys,) in rows])
    assert "Bitmap Index Scan on ix_storykeys_band_keys" in plan, plan
    assert "Join Filter" not in plan and "Seq Scan on storykeys" not in plan, plan
    assert sorted(found) == [(n, 2990 + n) for n in range(1, 11)]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migration_0011_moves_the_band_rows_into_one_row_a_story_and_back(kind: str, tmp_path: Path) -> None:
    """Stories stored before 0011 keep their keys (in their order, with their earliest time):
    on PostgreSQL they leave ``storyband`` for ``storykeys``; SQLite keeps both. The downgrade
    gives PostgreSQL its band rows back."""
    from alembic import command
    from sqlalchemy import text

    with database_settings(kind, tmp_path) as settings:
        cfg, engine = db.alembic_config(settings), db.get_engine(settings)
        command.downgrade(cfg, "0010")
        with engine.begin() as conn:
            _alerted_articles(conn, 2)
            bands = [
                (1, "3:c", NOW),
                (1, "0:a", NOW - timedelta(minutes=1)),
                (1, "t:b", NOW),
                (2, "0:z", NOW),
            ]
            for alert_id, key, at in bands:
                conn.execute(
                    text("INSERT INTO storyband (alert_id, key, created_at) VALUES (:a, :k, :at)"),
                    {"a": alert_id, "k": key, "at": at},
                )
        command.upgrade(cfg, "0011")
        with engine.connect() as conn:
            moved = conn.execute(
                text("SELECT alert_id, band_keys, created_at FROM storykeys ORDER BY alert_id")
            ).all()
            left = conn.execute(text("SELECT count(*) FROM storyband")).scalar_one()
        keys = [(a, k if isinstance(k, list) else json.loads(k)) for a, k, _ in moved]
        assert keys == [(1, ["3:c", "0:a", "t:b"]), (2, ["0:z"])]
        first = moved[0][2] if isinstance(moved[0][2], datetime) else datetime.fromisoformat(moved[0][2])
        assert (first if first.tzinfo else first.replace(tzinfo=UTC)) == NOW - timedelta(minutes=1)
        assert left == (0 if kind == "postgresql" else 4)
        command.downgrade(cfg, "0010")
        with engine.connect() as conn:
            back = conn.execute(text("SELECT alert_id, key FROM storyband ORDER BY id")).all()
        assert [tuple(r) for r in back] == [(a, k) for a, k, _ in bands]
        command.upgrade(cfg, "head")


def _alerted_articles(conn: Any, count: int) -> None:
    """A feed (id 1) with ``count`` flagged articles and their alerts (ids 1 to ``count``)."""
    from sqlalchemy import text

    conn.execute(
        text(
            "INSERT INTO feed (id, config_url, url, name, tags, interval_minutes, full_text, enabled,"
            " state, next_check_at, next_check_reason, unreported_claims, last_entries, last_new,"
            " error_count, total_errors, redirect_count, redirect_history, poll_history,"
            " conditional_polls, created_at, updated_at) VALUES (1, 'http://127.0.0.1/f',"
            " 'http://127.0.0.1/f', 'f', '[]', 5, false, true, 'ok', :at, '', 0, 0, 0, 0, 0, 0,"
            " '[]', '[]', 0, :at, :at)"
        ),
        {"at": NOW},
    )
    numbers = "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < :count) "
    conn.execute(
        text(
            numbers + "INSERT INTO article (id, identity_key, feed_id, title, summary, text, published_at,"
            " published_from_feed, fetched_at, content_hash, flagged, full_text_attempts)"
            " SELECT n, 'k' || n, 1, 't', '', 'x', :at, true, :at, 'h', true, 0 FROM s"
        ),
        {"at": NOW, "count": count},
    )
    conn.execute(
        text(
            numbers + "INSERT INTO alert (id, article_id, topics, status, attempts, created_at, minhash)"
            " SELECT n, n, '[]', 'pending', 0, :at, '[]' FROM s"
        ),
        {"at": NOW, "count": count},
    )


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migration_0012_gives_every_feed_its_origin(kind: str, tmp_path: Path) -> None:
    """Feeds stored before 0012 get the origin of the URL they are fetched from (an adopted
    redirect's, not the configured one), and those sharing it with another feed are in rounds;
    the downgrade drops the columns and their index."""
    from alembic import command
    from sqlalchemy import inspect, text

    with database_settings(kind, tmp_path) as settings:
        cfg, engine = db.alembic_config(settings), db.get_engine(settings)
        command.downgrade(cfg, "0011")
        urls = {
            "https://news.am/eng/rss/": "https://News.AM:443/arm/rss/",
            "https://news.am/rus/rss/": "https://news.am/rus/rss/",
            "http://127.0.0.1:8080/f.xml": "http://127.0.0.1:8080/f.xml",
            "not a url": "not a url",
        }
        with engine.begin() as conn:
            for config_url, url in urls.items():
                conn.execute(
                    text(
                        "INSERT INTO feed (config_url, url, name, tags, interval_minutes, full_text,"
                        " enabled, state, next_check_at, next_check_reason, unreported_claims,"
                        " last_entries, last_new, error_count, total_errors, redirect_count,"
                        " redirect_history, poll_history, conditional_polls, created_at, updated_at)"
                        " VALUES (:c, :u, '', '[]', 10, false, true, 'new', :t, '', 0, 0, 0, 0, 0, 0,"
                        " '[]', '[]', 0, :t, :t)"
                    ),
                    {"c": config_url, "u": url, "t": NOW},
                )
        command.upgrade(cfg, "0012")
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT config_url, origin, in_rounds FROM feed")).all()
            indexes = {i["name"] for i in inspect(conn).get_indexes("feed")}
        assert {c: (o, bool(r)) for c, o, r in rows} == {
            "https://news.am/eng/rss/": ("https://news.am", True),  # two feeds on news.am: rounds
            "https://news.am/rus/rss/": ("https://news.am", True),
            "http://127.0.0.1:8080/f.xml": ("http://127.0.0.1:8080", False),
            "not a url": (None, False),
        }
        assert "ix_feed_rounds" in indexes
        command.downgrade(cfg, "0011")
        with engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("feed")}
            indexes = {i["name"] for i in inspect(conn).get_indexes("feed")}
        assert not {"origin", "in_rounds"} & columns and "ix_feed_rounds" not in indexes
        command.upgrade(cfg, "head")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migration_0013_leaves_the_rate_limit_index_on_claimed_at_alone(kind: str, tmp_path: Path) -> None:
    """0013 replaces the delivery index on ``(claimed_at, channel)`` with one on ``claimed_at``;
    the downgrade puts the old one back."""
    from alembic import command
    from sqlalchemy import inspect

    def delivery_indexes() -> dict[str, list[str]]:
        with engine.connect() as conn:
            return {i["name"]: i["column_names"] for i in inspect(conn).get_indexes("delivery")}

    with database_settings(kind, tmp_path) as settings:
        cfg, engine = db.alembic_config(settings), db.get_engine(settings)
        indexes = delivery_indexes()
        assert (
            indexes["ix_delivery_claimed_at"] == ["claimed_at"]
            and "ix_delivery_claimed_channel" not in indexes
        )
        command.downgrade(cfg, "0012")
        indexes = delivery_indexes()
        assert indexes["ix_delivery_claimed_channel"] == ["claimed_at", "channel"]
        assert "ix_delivery_claimed_at" not in indexes
        command.upgrade(cfg, "head")
        assert delivery_indexes()["ix_delivery_claimed_at"] == ["claimed_at"]


def test_migration_0014_sets_the_feed_tables_fillfactor_on_postgresql(tmp_path: Path) -> None:
    """0014 fills the feed table's pages to 50 %; the downgrade resets it (a storage parameter:
    the schema comparison above cannot see it)."""
    from alembic import command
    from sqlalchemy import text

    def options() -> list[str]:
        with engine.connect() as conn:
            return list(
                conn.execute(text("SELECT reloptions FROM pg_class WHERE relname = 'feed'")).scalar() or []
            )

    with database_settings("postgresql", tmp_path) as settings:
        cfg, engine = db.alembic_config(settings), db.get_engine(settings)
        assert options() == ["fillfactor=50"]
        command.downgrade(cfg, "0013")
        assert options() == []
        command.upgrade(cfg, "head")
        assert options() == ["fillfactor=50"]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migration_0015_indexes_the_full_text_candidates_by_status_and_finish(
    kind: str, tmp_path: Path
) -> None:
    """0015 rebuilds the candidates' partial index on ``(full_text_status, extracted_at)``; the
    downgrade puts it back on the status alone. Partial either way: an article that never was a
    candidate has no entry."""
    from alembic import command
    from sqlalchemy import inspect, text

    def index() -> list[str]:
        with engine.connect() as conn:
            found = {i["name"]: i["column_names"] for i in inspect(conn).get_indexes("article")}
            return found["ix_article_full_text_status"]

    def partial() -> bool:
        query = (
            "SELECT indexdef LIKE '%WHERE%full_text_status IS NOT NULL%' FROM pg_indexes"
            " WHERE indexname = 'ix_article_full_text_status'"
            if kind == "postgresql"
            else "SELECT sql LIKE '%WHERE full_text_status IS NOT NULL%' FROM sqlite_master"
            " WHERE name = 'ix_article_full_text_status'"
        )
        with engine.connect() as conn:
            return bool(conn.execute(text(query)).scalar_one())

    with database_settings(kind, tmp_path) as settings:
        cfg, engine = db.alembic_config(settings), db.get_engine(settings)
        assert index() == ["full_text_status", "extracted_at"] and partial()
        command.downgrade(cfg, "0014")
        assert index() == ["full_text_status"] and partial()
        command.upgrade(cfg, "head")
        assert index() == ["full_text_status", "extracted_at"] and partial()


def test_a_polled_feed_tables_heap_stops_growing_without_vacuum(tmp_path: Path) -> None:
    """Migration 0014, what it is for: every poll writes two versions of its feed's ~2.5 KB row
    (the claim, the poll's state), neither heap-only. Polled round after round with VACUUM never
    running, the heap stops growing: each new version finds room on its row's page, and the next
    read of the page prunes the dead one. Here 150 pages became 300 (each row alone on its page)
    and stayed there. At the default fillfactor every version went to the table's end: 82 pages
    became ~5,800 in these 40 rounds and kept growing (round 48 in docs/performance-history.md:
    372-380 MB for 10,600 feeds at the end of a benchmark run with autovacuum off).

    A transaction that holds an id anywhere in the cluster, another database included, stops
    that pruning while it is open (6,150 pages here with one open in ``postgres`` throughout;
    a snapshot without an id does not): the suite's other worker runs such tests (an ANALYZE
    holds one). So each round of polls starts once no other session holds one (waiting 5 s at
    most), and a try that still grew past the bound is repeated, three at most; lost
    fillfactor fails all three (round 55). Waiting once a try, three tries read 1,192, 1,089
    and 483 pages in one CI run (round 61)."""
    from support import polls

    tries: list[tuple[int, int]] = []
    for _ in range(3):
        with database_settings("postgresql", tmp_path / str(len(tries))) as settings:
            engine = db.get_engine(settings)
            ids = polls.seed(engine, 300)
            before = _heap_pages(engine)
            alone = functools.partial(_wait_for_no_open_transaction_id, engine, 5)
            polls.poll(engine, ids, 40, before_round=alone)
            tries.append((before, _heap_pages(engine)))
        if tries[-1][1] <= 3 * tries[-1][0]:
            break
    before, after = tries[-1]
    assert after <= 3 * before, tries


def _heap_pages(engine: Any) -> int:
    from sqlalchemy import text

    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_relation_size('feed') / 8192")).scalar_one())


def _wait_for_no_open_transaction_id(engine: Any, seconds: float = 60) -> None:
    """Until no other session of the cluster holds a transaction id (or ``seconds`` passed)."""
    import time

    from sqlalchemy import text

    others = "pid <> pg_backend_pid() AND backend_xid IS NOT NULL"
    query = text(f"SELECT count(*) FROM pg_stat_activity WHERE {others}")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if not conn.execute(query).scalar_one():
                return
        time.sleep(0.1)
