"""storykeys: a story's band keys in one row (PostgreSQL: an array under a GIN index)

A story (an alert, ``feedwatch.stories``) has 20 LSH band keys and a title key. Until now each
was a ``storyband`` row: a heap tuple, three index entries (its id, its alert, its key) and a
foreign-key check each, ~260-290 us of PostgreSQL's CPU a story, a sixth of the database's
work while every new item is stored in the benchmark (one item in 20 flagged). One row holding
the keys as an array, looked up through a GIN index (``band_keys && (SELECT :keys)``), costs
~75 us (``docs/performance-history.md``, round 27).

PostgreSQL: ``storykeys`` is created with its GIN index (``fastupdate`` off: a lookup never
reads a pending list), filled from ``storyband`` (each alert's keys in their order, its earliest
``created_at``), and ``storyband`` is truncated: the service no longer writes or reads it there.

SQLite has no inverted index: ``storyband`` stays its index of the keys, and ``storykeys`` is
filled from it as well (a JSON list), so every alert has its keys in one row on both.

The upgrade locks ``storyband`` and ``alert`` (for the foreign key) while it copies: 14 s for
100,000 stories (2.1 million band rows) on the benchmark machine; upgrade in a quiet moment. The
downgrade copies the keys back into ``storyband`` rows on PostgreSQL (32 s for as many) and
drops ``storykeys``.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEY = sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "storykeys",
        sa.Column("alert_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("band_keys", sa.JSON().with_variant(postgresql.ARRAY(_KEY), "postgresql"), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["alert_id"], ["alert.id"]),
        sa.PrimaryKeyConstraint("alert_id"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "INSERT INTO storykeys (alert_id, band_keys, created_at)"
            " SELECT alert_id, array_agg(key ORDER BY id), min(created_at) FROM storyband GROUP BY alert_id"
        )
        # TRUNCATE, not DELETE: nothing writes the table here again, so space a DELETE left would
        # stay the table's until a VACUUM FULL.
        op.execute("TRUNCATE storyband")
        op.create_index(
            "ix_storykeys_band_keys",
            "storykeys",
            ["band_keys"],
            postgresql_using="gin",
            postgresql_with={"fastupdate": "off"},
        )
    else:
        op.execute(
            "INSERT INTO storykeys (alert_id, band_keys, created_at)"
            " SELECT alert_id, json_group_array(key), min(created_at)"
            " FROM (SELECT alert_id, key, created_at FROM storyband ORDER BY id) GROUP BY alert_id"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "INSERT INTO storyband (alert_id, key, created_at)"
            " SELECT alert_id, key, created_at FROM storykeys, unnest(band_keys) WITH ORDINALITY AS k(key, n)"
            " ORDER BY alert_id, n"
        )
        op.drop_index("ix_storykeys_band_keys", table_name="storykeys")
    op.drop_table("storykeys")
