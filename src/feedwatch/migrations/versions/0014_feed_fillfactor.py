"""PostgreSQL: the feed table at fillfactor 50, so a poll's new row versions stay on their page

Every poll writes its feed row twice (the tick's claim, the poll's state), and neither update
can be heap-only: both move the indexed ``next_check_at``. Each new version (~2.2-2.7 KB: the
item spans, the fingerprints, the history) goes on the old one's page when it has room, and
otherwise wherever the free-space map says; only VACUUM fills that map. Packed full, as
inserts leave the table at the default fillfactor 100, a page never has room, so every version
went to a new page at the table's end: in benchmark runs the heap of 10,600 feeds grew to
372-380 MB with the server's autovacuum off and to 260 MB with it on, two to three times
PostgreSQL's default buffer pool (round 48 in docs/performance-history.md). At 50 a page keeps
room for one more version of a row; the next read of the page prunes the dead one, so the page
makes room again and the heap stays at about a row a page (41-42 MB there), with or without
VACUUM.

Only new pages are filled to 50; existing pages keep their rows until they move. On SQLite
nothing changes.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILLFACTOR = 50


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE feed SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE feed RESET (fillfactor)")
