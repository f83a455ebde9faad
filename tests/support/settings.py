"""Settings for a test: environment set through monkeypatch, the database migrated."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from feedwatch import db
from feedwatch.settings import Settings, reset_settings


@contextmanager
def migrated_settings(monkeypatch: pytest.MonkeyPatch, home: Path, **env: str) -> Iterator[Settings]:
    """Settings with FEEDWATCH_HOME=home (SQLite there unless env names a database) and ``env``
    (names without the FEEDWATCH_ prefix); the schema is applied, engines disposed afterwards."""
    monkeypatch.setenv("FEEDWATCH_HOME", str(home))
    monkeypatch.delenv("FEEDWATCH_DATABASE_URL", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(f"FEEDWATCH_{name}", value)
    reset_settings()
    settings = Settings()
    db.upgrade(settings)
    try:
        yield settings
    finally:
        db.dispose_engines()
        reset_settings()


@contextmanager
def database_settings(kind: str, home: Path) -> Iterator[Settings]:
    """Migrated settings on ``kind``: "sqlite" (a file under ``home``) or "postgresql" (a fresh
    database, dropped afterwards). For tests parametrized over both databases."""
    if kind == "sqlite":
        settings = Settings(home=home)
        db.upgrade(settings)
        try:
            yield settings
        finally:
            db.dispose_engines()
        return
    from support.services import postgres_database

    with postgres_database() as url:
        settings = Settings(home=home, database_url=url)
        db.upgrade(settings)
        yield settings
