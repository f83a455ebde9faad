"""article: drop the indexes no query reads (content_hash, flagged)

Every article insert paid for eight indexes. No statement filters or sorts articles by
``content_hash``, and ``flagged`` is only counted together with ``fetched_at`` (which has its own
index). See docs/performance-history.md, round 4.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("article") as batch:
        batch.drop_index("ix_article_content_hash")
        batch.drop_index("ix_article_flagged")


def downgrade() -> None:
    with op.batch_alter_table("article") as batch:
        batch.create_index("ix_article_flagged", ["flagged"], unique=False)
        batch.create_index("ix_article_content_hash", ["content_hash"], unique=False)
