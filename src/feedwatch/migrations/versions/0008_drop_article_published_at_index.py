"""article: drop the index on published_at, which no query reads

Every stored article paid for it. The service reads ``published_at`` only as a column of rows it
found by other keys (an alert's article, a story's copies); the status counts go by
``fetched_at``, which keeps its index. See docs/performance-history.md, round 14. A deployment that
queries articles by publication time itself can create the index again; ``downgrade`` does.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("article") as batch:
        batch.drop_index("ix_article_published_at")


def downgrade() -> None:
    with op.batch_alter_table("article") as batch:
        batch.create_index("ix_article_published_at", ["published_at"], unique=False)
