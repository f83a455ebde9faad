"""Fixtures for fault tests: a feed server that can hold responses, databases, private servers.

Tests that kill, freeze or restart a server get a private one on a free port (``private_redis``,
``private_pg``); the others use the machine's Redis on database 8 (this suite's number, flushed
per test) and a fresh database on the machine's PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.faults import GatedFeedServer, PrivatePostgres, PrivateRedis
from support.feeds import seed_feed, write_feeds_toml
from support.services import postgres_database, redis_url
from support.stack import Stack

REDIS_DB = 8


@pytest.fixture
def feed_server() -> Iterator[GatedFeedServer]:
    server = GatedFeedServer().start()
    server.bodies["/seed.xml"] = seed_feed()
    yield server
    server.stop()


@pytest.fixture
def broker() -> str:
    return redis_url(REDIS_DB)


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    yield server
    server.destroy()


@pytest.fixture
def seed_feeds_file(tmp_path: Path, feed_server: GatedFeedServer) -> Path:
    """One feed (the seed article among three unrelated items), due once an hour."""
    return write_feeds_toml(tmp_path / "feeds.toml", [feed_server.url("/seed.xml")], interval_minutes=60)


@pytest.fixture
def stacks(tmp_path: Path) -> Iterator[list[Stack]]:
    """Stacks a test builds; every process they started is stopped by pid afterwards."""
    built: list[Stack] = []
    yield built
    for stack in built:
        stack.stop()
