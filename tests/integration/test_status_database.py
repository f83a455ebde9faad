"""The status report's database warnings: what the server is set to that the service does not
work well with, on the real PostgreSQL of this machine and on SQLite."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import text
from support.settings import database_settings

from feedwatch import db, metrics, status
from feedwatch.ops import render_status
from feedwatch.status import collect_status


@pytest.mark.parametrize(("kind", "upkeep"), [("sqlite", 60.0), ("postgresql", 60.0), ("postgresql", 0.0)])
def test_the_report_warns_when_postgresqls_autovacuum_is_off(
    kind: str, upkeep: float, tmp_path: Path
) -> None:
    """Whatever this server is set to: the warning is there exactly when ``SHOW autovacuum`` says
    off (a server setting, not one a test may change), says whether the service's own upkeep
    stands in for it, and is never there on SQLite."""
    with database_settings(kind, tmp_path) as migrated:
        settings = migrated.model_copy(update={"db_upkeep_seconds": upkeep})
        report = collect_status(settings, ping_timeout=0)
        off = False
        if kind == "postgresql":
            with db.get_engine(settings).connect() as conn:
                off = conn.execute(text("SHOW autovacuum")).scalar() == "off"
    expected = {
        60.0: "PostgreSQL's autovacuum is off: feedwatch checks its tables every 60 s and vacuums and"
        " analyzes those autovacuum would (FEEDWATCH_DB_UPKEEP_SECONDS)",
        0.0: "PostgreSQL's autovacuum is off and FEEDWATCH_DB_UPKEEP_SECONDS is 0: the tables are never"
        " vacuumed or analyzed (turn either on, or run VACUUM ANALYZE on a schedule)",
    }
    assert report["database"]["ok"] is True
    assert report["database"]["warnings"] == ([expected[upkeep]] if off else [])


def test_the_terminal_report_shows_the_databases_warnings() -> None:
    report = {
        "generated_at": "2026-12-05T12:00:00+00:00",
        "database": {
            "url": "postgresql://…",
            "ok": True,
            "error": None,
            "warnings": ["autovacuum [b]off[/b]"],
        },
        "broker": {"url": "redis://…", "ok": True, "error": None},
        "beat": None,
        "queues": {},
        "workers": {"ok": None, "error": "not asked", "answered": []},
        "feeds": None,
        "problems": [],
    }
    out = io.StringIO()
    render_status(report, Console(file=out, width=200, color_system=None))
    assert "warning: autovacuum [b]off[/b]" in out.getvalue()  # as text, not markup
    assert "✓ healthy" in out.getvalue()  # a warning is not a problem


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_identity_index_is_read_against_the_buffer_pool(kind: str, tmp_path: Path) -> None:
    """On PostgreSQL, ``db.identity_index`` finds the unique index on ``article.identity_key``
    and reads its size and ``shared_buffers`` as the server reports them; the report's
    ``database.identity_index`` and the two gauges of ``/metrics`` carry them. SQLite has none."""
    with database_settings(kind, tmp_path) as settings, db.get_engine(settings).connect() as conn:
        index = db.identity_index(conn)
        report = collect_status(settings, ping_timeout=0)
        gauges = {
            m.name: m.samples[0].value
            for m in metrics.status_metrics(report)
            if m.name in ("feedwatch_identity_index_bytes", "feedwatch_shared_buffers_bytes")
        }
        if kind == "sqlite":
            assert index is None
            assert report["database"]["identity_index"] is None and gauges == {}
            return
        assert index is not None
        assert index.name == "article_identity_key_key"  # migration 0001's unique constraint
        query = (
            "SELECT pg_relation_size(CAST(:name AS regclass)),"
            " pg_size_bytes(current_setting('shared_buffers'))"
        )
        size, pool = conn.execute(text(query), {"name": index.name}).one()
        assert (index.size_bytes, index.pool_bytes) == (size, pool)
        assert index.size_bytes >= 8192 and index.pool_bytes >= 128 * 8192  # a metapage; the server's minimum
        assert report["database"]["identity_index"] == {"bytes": size, "shared_buffers_bytes": pool}
        assert gauges == {"feedwatch_identity_index_bytes": size, "feedwatch_shared_buffers_bytes": pool}


def test_the_report_warns_when_the_identity_index_outgrows_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warning carries the real index's and pool's sizes. A test database's index is a few
    pages, so the share that sets the warning off is made smaller than that here."""
    with database_settings("postgresql", tmp_path) as settings:
        quiet = collect_status(settings, ping_timeout=0)["database"]["warnings"]
        with db.get_engine(settings).connect() as conn:
            index = db.identity_index(conn)
        assert index is not None
        monkeypatch.setattr(status, "IDENTITY_INDEX_POOL_SHARE", index.size_bytes / index.pool_bytes / 2)
        loud = collect_status(settings, ping_timeout=0)["database"]["warnings"]
    assert not any("identity index" in w for w in quiet)
    assert loud == [*quiet, status.pool_warning(index.size_bytes, index.pool_bytes)]
    assert f"shared_buffers {index.pool_bytes / 2**20:,.0f} MB" in loud[-1]
