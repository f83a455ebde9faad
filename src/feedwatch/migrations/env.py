"""Alembic environment: runs against the engine handed in by ``feedwatch.db.upgrade``."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import feedwatch.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from feedwatch.db import make_engine

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine") or make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        context.run_migrations()


run_migrations_online()
