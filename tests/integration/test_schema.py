"""The migrations build the schema the models declare: no table, column or index missing or extra
(the types' spelling aside), on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel
from support.settings import database_settings

import feedwatch.models  # noqa: F401 - registers the tables
from feedwatch import db


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migrations_match_the_models(kind: str, tmp_path: Path) -> None:
    with database_settings(kind, tmp_path) as settings, db.get_engine(settings).connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
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
    """Migration 0006: the statements that name deliveries by alert and channel are served by an
    ``alert_id`` index, in the generic plan PostgreSQL caches for a prepared statement, even one
    made while the table held a few rows and had never been analyzed. With the rate-limit index
    led by ``channel`` such a plan read every delivery of the channel on each call, and kept
    doing so as the table grew."""
    from datetime import UTC, datetime

    from sqlalchemy import text
    from support.stories import add_article, add_feed

    from feedwatch.models import Alert, Delivery

    NOW = datetime(2026, 12, 1, tzinfo=UTC)
    with database_settings("postgresql", tmp_path) as settings:
        with db.session_scope(settings) as session:
            feed = add_feed(session)
            for i in range(5):
                alert = Alert(article_id=add_article(session, feed, f"k{i}", "t", NOW).id or 0, topics=[])
                session.add(alert)
                session.flush()
                delivery = Delivery(alert_id=alert.id or 0, channel="jsonl", status="sending", claimed_at=NOW)
                session.add(delivery)
        plans = {}
        with db.get_engine(settings).connect() as conn:
            conn.execute(text("SET plan_cache_mode = force_generic_plan"))
            for name, where, args in (
                ("many", "alert_id = ANY($1::integer[]) AND channel = $2", "('{1,2}', 'jsonl')"),
                ("one", "alert_id = $1::integer AND channel = $2", "(1, 'jsonl')"),
            ):
                conn.execute(text(f"PREPARE {name} AS UPDATE delivery SET status = 'sent' WHERE {where}"))
                explained = conn.execute(text(f"EXPLAIN EXECUTE {name}{args}"))
                plans[name] = "\n".join(row[0] for row in explained)
    for name, plan in plans.items():
        assert "ix_delivery_claimed_channel" not in plan, (name, plan)
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
