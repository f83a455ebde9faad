"""feed.origin: the scheme, host and port a feed is fetched from, by which a tick polls an
origin's feeds together (one connection for them)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DEFAULT_PORTS = {"http": 80, "https": 443}
_CHUNK = 1000


def _origin(url: str) -> str | None:
    """``feedwatch.models.origin_of`` as it was at this revision (a migration does not follow
    later changes to the code)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or not parts.scheme:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS.get(parts.scheme):
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def upgrade() -> None:
    with op.batch_alter_table("feed") as batch:
        batch.add_column(sa.Column("origin", sa.Text(), nullable=True))
    feed = sa.table(
        "feed", sa.column("id", sa.Integer()), sa.column("url", sa.Text()), sa.column("origin", sa.Text())
    )
    connection = op.get_bind()
    rows = connection.execute(sa.select(feed.c.id, feed.c.url)).all()
    update = sa.update(feed).where(feed.c.id == sa.bindparam("feed_id")).values(origin=sa.bindparam("value"))
    for start in range(0, len(rows), _CHUNK):
        values = [{"feed_id": i, "value": _origin(url)} for i, url in rows[start : start + _CHUNK]]
        connection.execute(update, values)
    op.create_index("ix_feed_origin_next_check_at", "feed", ["origin", "next_check_at"])


def downgrade() -> None:
    op.drop_index("ix_feed_origin_next_check_at", table_name="feed")
    with op.batch_alter_table("feed") as batch:
        batch.drop_column("origin")
