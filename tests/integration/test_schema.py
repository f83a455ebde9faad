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
