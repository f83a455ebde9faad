"""feed.origin: the scheme, host and port a feed is fetched from, and feed.in_rounds, by which a
tick polls an origin's feeds together (one connection for them)

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
#: ``feedwatch.store.ROUND_ORIGIN_MOST`` at this revision.
_ROUND_ORIGIN_MOST = 500


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
    # ALTER TABLE … ADD COLUMN on both: a batch would copy the table on SQLite, and could not drop
    # the old one while other tables' rows refer to it.
    op.add_column("feed", sa.Column("origin", sa.Text(), nullable=True))
    op.add_column("feed", sa.Column("in_rounds", sa.Boolean(), nullable=False, server_default=sa.false()))
    feed = sa.table(
        "feed",
        sa.column("id", sa.Integer()),
        sa.column("url", sa.Text()),
        sa.column("enabled", sa.Boolean()),
        sa.column("origin", sa.Text()),
        sa.column("in_rounds", sa.Boolean()),
    )
    connection = op.get_bind()
    rows = [
        (i, _origin(url), bool(enabled))
        for i, url, enabled in connection.execute(sa.select(feed.c.id, feed.c.url, feed.c.enabled))
    ]
    counts: dict[str, int] = {}
    for _, origin, enabled in rows:
        if enabled and origin is not None:
            counts[origin] = counts.get(origin, 0) + 1
    update = (
        sa.update(feed)
        .where(feed.c.id == sa.bindparam("feed_id"))
        .values(origin=sa.bindparam("value"), in_rounds=sa.bindparam("rounds"))
    )
    for start in range(0, len(rows), _CHUNK):
        values = [
            {
                "feed_id": i,
                "value": origin,
                "rounds": enabled and origin is not None and 2 <= counts[origin] <= _ROUND_ORIGIN_MOST,
            }
            for i, origin, enabled in rows[start : start + _CHUNK]
        ]
        connection.execute(update, values)
    op.create_index(
        "ix_feed_rounds",
        "feed",
        ["origin", "next_check_at"],
        postgresql_where=sa.text("in_rounds"),
        sqlite_where=sa.text("in_rounds = 1"),  # the term SQLAlchemy's queries have there
    )


def downgrade() -> None:
    op.drop_index("ix_feed_rounds", table_name="feed")
    # ALTER TABLE … DROP COLUMN on both (SQLite since 3.35), as the upgrade adds them.
    op.drop_column("feed", "in_rounds")
    op.drop_column("feed", "origin")
