"""The status report's database warnings: what the server is set to that the service does not
work well with, on the real PostgreSQL of this machine and on SQLite."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import text
from support.settings import database_settings

from feedwatch import db
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
