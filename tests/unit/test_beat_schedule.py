"""What beat sends besides the tick: the database upkeep, on every database, unless turned off."""

from __future__ import annotations

from pathlib import Path

from feedwatch.settings import Settings
from workers.app import create_app


def test_beat_sends_the_database_upkeep_unless_turned_off(tmp_path: Path) -> None:
    pg = Settings(
        home=tmp_path,
        database_url="postgresql+psycopg://feedwatch@127.0.0.1:5432/feedwatch",
        broker_url="redis://127.0.0.1:6379/15",
    )
    app = create_app(pg)
    entry = app.conf.beat_schedule["db-upkeep"]
    assert (entry["task"], entry["schedule"], entry["options"]["queue"]) == (
        "feedwatch.db_upkeep",
        60.0,
        "upkeep",
    )
    assert app.conf.task_routes["feedwatch.db_upkeep"]["queue"] == "upkeep"
    assert "db-upkeep" not in create_app(pg.model_copy(update={"db_upkeep_seconds": 0})).conf.beat_schedule
    # SQLite: the story keys past their window are pruned there too (no VACUUM: db.upkeep is None).
    sqlite = Settings(home=tmp_path)
    assert sqlite.is_sqlite
    assert create_app(sqlite).conf.beat_schedule["db-upkeep"]["task"] == "feedwatch.db_upkeep"
    assert (
        "db-upkeep" not in create_app(sqlite.model_copy(update={"db_upkeep_seconds": 0})).conf.beat_schedule
    )
