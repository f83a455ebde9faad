"""delivery: the rate-limit index leads with claimed_at, not channel

Every other statement on ``delivery`` names its rows by ``alert_id`` and ``channel``. With
PostgreSQL's plan cache (round 11 in docs/performance-history.md), a generic plan made while the table
was nearly empty could take ``(channel, claimed_at)`` for ``channel = …`` and then read every
delivery of the channel on each call, until the table was first analyzed. With ``claimed_at``
first, only ``alert_id`` indexes serve those statements; the rate-limit count reads the last
minute's range of ``claimed_at`` either way.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("delivery") as batch:
        batch.drop_index("ix_delivery_channel_claimed")
        batch.create_index("ix_delivery_claimed_channel", ["claimed_at", "channel"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("delivery") as batch:
        batch.drop_index("ix_delivery_claimed_channel")
        batch.create_index("ix_delivery_channel_claimed", ["channel", "claimed_at"], unique=False)
