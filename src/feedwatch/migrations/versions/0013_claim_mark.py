"""claim_mark: how far the tick's claim has gone through the due feeds, so that a claim writes no
row version of the feeds it sends (one mark a tick, where each claimed feed's row was updated)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Empty: the first tick after the upgrade reads the due feeds from the start. Feeds that an
    # earlier version claimed keep their lease (next_check_at moved on by it) and fall due again.
    op.create_table(
        "claim_mark",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("next_check_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("feed_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    # Feeds at or before the newest mark have a poll outstanding that no row records: an earlier
    # version claims them again at once (a repeated poll, harmless).
    op.drop_table("claim_mark")
