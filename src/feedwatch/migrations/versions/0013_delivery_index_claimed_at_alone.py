"""delivery: the rate-limit index on claimed_at alone, without channel

Migration 0006 put ``claimed_at`` before ``channel`` in the rate-limit index so that no generic
plan would serve the statements that name deliveries by ``alert_id`` and ``channel`` from it.
A bitmap scan can still take ``channel = …`` as the condition of an index it does not lead:
PostgreSQL's generic plan of the batch's "sent" update (``alerts._MARK_SENT``), made while the
never-analyzed table held ~300 rows, read the whole index and every heap page on each call, and
kept doing so as the table grew (round 47 in docs/performance-history.md: 8,500 index entries a
call in a benchmark run, a sixth of PostgreSQL's busy samples while ingesting). On ``claimed_at``
alone the index offers such a statement no condition at all; the rate-limit count still reads
the last minute's range of ``claimed_at`` through it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("delivery") as batch:
        batch.drop_index("ix_delivery_claimed_channel")
        batch.create_index("ix_delivery_claimed_at", ["claimed_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("delivery") as batch:
        batch.drop_index("ix_delivery_claimed_at")
        batch.create_index("ix_delivery_claimed_channel", ["claimed_at", "channel"], unique=False)
