"""The database upkeep is not queued behind the poll batches.

Where autovacuum is off, beat sends ``feedwatch.db_upkeep`` once a minute, each message expiring
after that minute. In the ``feeds`` queue (round 60) it waited behind every poll batch queued
before it, and behind a minute of them it expired unrun: an overloaded service, the one whose
tables grow fastest, never vacuumed them. On a queue of its own, which every feeds worker
consumes, it is taken at a feeds process's next free turn (kombu's Redis transport asks a
worker's queues in turn, the one it last took from last).

The feeds worker is started as docker-compose.yml starts it (its ``-Q`` names no upkeep queue:
a feeds worker takes it anyway), with one process. Six poll batches fill its queue, each
parked at the feed server until released, and the upkeep is sent after them. Releasing the
first poll frees the process: the upkeep runs next, while the other five batches wait.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.faults import GatedFeedServer, story_feed
from support.feeds import write_feeds_toml
from support.services import compose_queues, wait_for
from support.stack import PATIENT, Stack

from feedwatch.settings import Settings
from workers.app import create_app

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(180)]

NAMES = ("a", "b", "c")
PATHS = [f"/{name}-{n}.xml" for n in range(2) for name in NAMES]


def test_the_upkeep_runs_at_the_next_free_turn_not_behind_the_poll_backlog(
    tmp_path: Path, feed_server: GatedFeedServer, broker: str, pg_url: str, stacks: list[Stack]
) -> None:
    for path in PATHS:
        feed_server.bodies[path] = story_feed(path[1:2])
        feed_server.hold(path)
    feeds = write_feeds_toml(
        tmp_path / "feeds.toml", [feed_server.url(p) for p in PATHS], interval_minutes=60
    )
    # A parked poll neither times out nor loses its lease while the test runs: without the
    # upkeep's own queue, it would wait for all six.
    stack = Stack(
        tmp_path,
        feeds,
        pg_url,
        FEEDWATCH_BROKER_URL=broker,
        FEEDWATCH_READ_TIMEOUT="200",
        **PATIENT,
    )
    stacks.append(stack)
    worker = stack.worker(
        "--no-beat", "-Q", compose_queues("worker-feeds"), "-c", "1", "--articles-pool", "0"
    )
    wait_for(lambda: "ready" in worker.output(), 60, "the feeds worker", worker)
    ids = {feed.url.rsplit("/", 1)[1]: feed.id for feed in stack.feeds()}
    assert len(ids) == len(PATHS)

    app = create_app(Settings(home=tmp_path / "sender", broker_url=broker))
    for path in PATHS:  # as the tick sends them: to the route's queue
        app.send_task("feedwatch.poll_feed", args=[[ids[path[1:]]]])
    wait_for(lambda: sum(feed_server.parked.values()) == 1, 60, "the first poll parked", worker)
    app.send_task("feedwatch.db_upkeep")

    first = next(p for p in PATHS if feed_server.parked[p])
    feed_server.release(first)
    wait_for(lambda: "db.upkeep" in worker.output(), 60, "the upkeep, before the other polls", worker)
    # The process took the upkeep at its first free turn; at most the batch after it has begun.
    begun = [p for p in PATHS if feed_server.hits[p]]
    assert len(begun) <= 2, begun
    assert first in begun
