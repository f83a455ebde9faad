"""``feedwatch.db.upkeep``: VACUUM and ANALYZE where PostgreSQL's autovacuum is off, on the real
PostgreSQL of this machine; nothing on SQLite."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from support import polls
from support.settings import database_settings

from feedwatch import db

CLAIM_READ = (
    "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT id FROM feed"
    " WHERE enabled AND state <> 'disabled' AND next_check_at <= :now ORDER BY next_check_at LIMIT 1"
)


def _claim_buffers(engine: Engine, now: datetime) -> int:
    """The buffers the tick's claim reads to find the first due feed (its read, without the
    locks): every index entry before it, dead or alive, is stepped over."""
    with engine.connect() as conn:
        plan = conn.execute(text(CLAIM_READ), {"now": now}).scalar_one()
    plan = plan if isinstance(plan, list) else json.loads(plan)
    return int(plan[0]["Plan"]["Shared Hit Blocks"]) + int(plan[0]["Plan"]["Shared Read Blocks"])


def _never_analyzed(engine: Engine) -> list[str]:
    """The service's tables PostgreSQL holds no row estimate of (``reltuples`` -1: never
    vacuumed or analyzed)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT relname FROM pg_class WHERE relkind = 'r' AND reltuples < 0"
                " AND relnamespace = 'public'::regnamespace AND relname <> 'alembic_version' ORDER BY relname"
            )
        )
        return [r[0] for r in rows]


def test_vacuum_and_analyze_clears_the_dead_entries_under_the_claim(tmp_path: Path) -> None:
    """Polled 30 rounds with nothing vacuuming, the claim's read steps over every dead version's
    index entry; after the upkeep it reads what the live rows take. And every table has been
    analyzed, so plans are made with its size known."""
    with database_settings("postgresql", tmp_path) as settings:
        engine = db.get_engine(settings)
        ids = polls.seed(engine, 300)
        now = polls.poll(engine, ids, 30)
        assert "article" in _never_analyzed(engine)
        _claim_buffers(engine, now)  # its first read marks the dead entries it meets: the claims' state
        before = _claim_buffers(engine, now)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            done = db.vacuum_and_analyze(conn)
        after = _claim_buffers(engine, now)
        assert _never_analyzed(engine) == []
    assert done["vacuumed"] == ["feed", "alert", "delivery"]
    assert {"article", "match", "sighting", "storykeys"} <= set(done["analyzed"])
    assert not set(done["vacuumed"]) & set(done["analyzed"])
    assert after * 5 < before, (before, after)


def test_the_task_runs_the_upkeep_only_where_autovacuum_is_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The worker's task, on the process's settings, whatever this server is set to (a server
    setting, not one a test may change): the upkeep runs exactly when ``SHOW autovacuum`` says
    off."""
    from support.services import postgres_database
    from support.settings import migrated_settings

    from workers import tasks

    with postgres_database() as url, migrated_settings(monkeypatch, tmp_path, DATABASE_URL=url) as settings:
        with db.get_engine(settings).connect() as conn:
            off = conn.execute(text("SHOW autovacuum")).scalar() == "off"
        done = tasks.db_upkeep()
    assert (done is not None) == off
    if done is not None:
        assert done["vacuumed"] == list(db.UPDATED_IN_PLACE)


def test_upkeep_does_nothing_on_sqlite(tmp_path: Path) -> None:
    with database_settings("sqlite", tmp_path) as settings:
        assert db.upkeep(settings) is None
