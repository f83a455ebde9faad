"""Alembic environment: runs against the engine handed in by ``feedwatch.db.upgrade``."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from feedwatch.db import make_engine
from feedwatch.models import declared_on  # (importing the models registers the tables)

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
            include_object=lambda item, _name, kind, reflected, _other: (
                reflected or kind != "index" or declared_on(item, connection.dialect.name)
            ),
        )
        context.run_migrations()


run_migrations_online()
