"""The full-text candidates' index on (status, extracted_at): status reads a day's failures alone

``feedwatch status`` (and the metrics endpoint, which collects it at every scrape) counts the
last day's full-text failures by error class: ``full_text_status = 'failed' AND extracted_at >=
<a day ago>``. The index held the status alone, so PostgreSQL read the row of every failed
candidate the deployment had ever stored to test its time: 200,000 heap pages (1.6 GB) for
4,300 rows, 0.98 s, in a table of 4 million articles; 2.5 s of the report's 2.7 s at 10 million
(``benchmarks/article_scale.py``, round 65 in docs/performance-history.md). With the time as the
index's second column the scan reads the last day's failures and nothing else.

Every query of the index still names a status, its first column. A candidate's ``extracted_at``
is set in the update that sets its final status, which changes the indexed status anyway (that
update was never heap-only): an entry is written as often as before, only larger (the time, and
fewer entries alike for PostgreSQL's deduplication to merge).

The index is rebuilt while the migration holds its lock on ``article``: writers wait while it
reads the table (1.6 s for 4 million articles here, the table in the OS cache); upgrade in a
quiet moment.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = "ix_article_full_text_status"
_HAS_STATUS = sa.text("full_text_status IS NOT NULL")


def _rebuild(columns: list[str]) -> None:
    with op.batch_alter_table("article") as batch:
        batch.drop_index(_NAME)
        batch.create_index(
            _NAME, columns, unique=False, postgresql_where=_HAS_STATUS, sqlite_where=_HAS_STATUS
        )


def upgrade() -> None:
    _rebuild(["full_text_status", "extracted_at"])


def downgrade() -> None:
    _rebuild(["full_text_status"])
