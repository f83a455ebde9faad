"""Fixtures shared by the integration tests that drive the pipeline in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.services import FeedServer

from feedwatch import db
from feedwatch.settings import Settings, reset_settings


@pytest.fixture
def server() -> Iterator[FeedServer]:
    """A feed server on 127.0.0.1 (a test module may override it with routes of its own)."""
    srv = FeedServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def pipeline_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings for a migrated SQLite database under tmp_path, loopback allowed, no host gap."""
    monkeypatch.setenv("FEEDWATCH_HOME", str(tmp_path))
    monkeypatch.delenv("FEEDWATCH_DATABASE_URL", raising=False)
    monkeypatch.setenv("FEEDWATCH_ALLOW_PRIVATE_NETWORKS", "true")
    monkeypatch.setenv("FEEDWATCH_PER_HOST_MIN_GAP_SECONDS", "0")
    reset_settings()
    settings = Settings()
    db.upgrade(settings)
    yield settings
    db.dispose_engines()
    reset_settings()
