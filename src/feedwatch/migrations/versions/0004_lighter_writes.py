"""feed, sighting, match, article: drop indexes that cost every write and serve no query

- ``ix_sighting_article_id`` and ``ix_match_article_id`` repeat the leading column of the unique
  constraints ``uq_sighting_article_feed`` and ``uq_match_article_topic``, whose indexes serve
  every lookup by ``article_id``: each stored article paid for an index entry in each, twice over.
- ``ix_article_full_text_status`` indexed every article, though only full-text candidates have a
  status (NULL otherwise) and every query of it names one: it becomes a partial index on the
  rows with a status, which an ordinary article's insert does not touch.
- ``ix_feed_state``: a feed row gets two new versions per poll (the claim, the state write),
  and PostgreSQL cannot update it in place (``next_check_at`` is indexed), so every version is
  entered in every index of ``feed``. Nothing filters by ``state`` alone but the operator's
  feed list, and five values over a feed table are read faster by a scan.

See docs/performance-history.md, round 6. On a large ``article`` table the partial index is built while
the migration holds its lock: run it in a quiet moment.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HAS_STATUS = sa.text("full_text_status IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("feed") as batch:
        batch.drop_index("ix_feed_state")
    with op.batch_alter_table("sighting") as batch:
        batch.drop_index("ix_sighting_article_id")
    with op.batch_alter_table("match") as batch:
        batch.drop_index("ix_match_article_id")
    with op.batch_alter_table("article") as batch:
        batch.drop_index("ix_article_full_text_status")
        batch.create_index(
            "ix_article_full_text_status",
            ["full_text_status"],
            unique=False,
            postgresql_where=_HAS_STATUS,
            sqlite_where=_HAS_STATUS,
        )


def downgrade() -> None:
    with op.batch_alter_table("article") as batch:
        batch.drop_index("ix_article_full_text_status")
        batch.create_index("ix_article_full_text_status", ["full_text_status"], unique=False)
    with op.batch_alter_table("match") as batch:
        batch.create_index("ix_match_article_id", ["article_id"], unique=False)
    with op.batch_alter_table("sighting") as batch:
        batch.create_index("ix_sighting_article_id", ["article_id"], unique=False)
    with op.batch_alter_table("feed") as batch:
        batch.create_index("ix_feed_state", ["state"], unique=False)
