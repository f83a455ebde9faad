"""article.identity_key and storyband.key compare byte by byte (COLLATE "C") on PostgreSQL

Both hold hashes written in hex. Under the database's collation (C.UTF-8, en_US.UTF-8, ...)
every comparison in their indexes went through the locale's strcoll and PostgreSQL made no
abbreviated keys for them; byte order costs ~1.5 µs less per index insert and per lookup
(docs/performance-history.md, round 13). Equality, hence every lookup's answer, is the same under both.

On PostgreSQL the column's type stays ``varchar(64)``, so the table is not rewritten, but the
indexes on the column are rebuilt, under a lock on the table: on a large ``article`` table this
takes a while (about a second per million rows on the benchmark machine). SQLite compares bytes
already: nothing to do there.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (("article", "identity_key"), ("storyband", "key"))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in _COLUMNS:
        op.alter_column(table, column, type_=sa.String(64, collation="C"), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in _COLUMNS:
        op.alter_column(table, column, type_=sa.String(64), existing_nullable=False)
