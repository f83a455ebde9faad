"""Fixtures shared by the integration tests that drive the pipeline in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session
from support.services import FeedServer
from support.settings import database_settings, migrated_settings

from feedwatch import db
from feedwatch.settings import Settings


@pytest.fixture
def server() -> Iterator[FeedServer]:
    """A feed server on 127.0.0.1 (a test module may override it with routes of its own)."""
    srv = FeedServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def pipeline_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings for a migrated SQLite database under tmp_path, loopback allowed, no host gap."""
    with migrated_settings(
        monkeypatch, tmp_path, ALLOW_PRIVATE_NETWORKS="true", PER_HOST_MIN_GAP_SECONDS="0"
    ) as settings:
        yield settings


@pytest.fixture(params=["sqlite", "postgresql"])
def session(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Session]:
    """One transaction on a migrated database of each kind (committed when the test ends)."""
    with database_settings(request.param, tmp_path) as settings, db.session_scope(settings) as s:
        yield s
