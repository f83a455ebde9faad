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
