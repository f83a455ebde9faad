"""A poison feed (its server never answers) under the embedded service: bounded, classified, isolated.

Every poll of it is ended by the task time limit (soft, then hard: the limits must really fire,
the fetch deadline is set far beyond them). Its claims go unreported; ``pipeline.tick`` polls a
suspect feed alone, so the healthy feed it first shared a batch with flows again at once, and
after ``CRASH_LIMIT`` unreported claims the feed is failed as ``crash`` and backs off.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.faults import GatedFeedServer, story_feed
from support.services import wait_for
from support.stack import Stack

from feedwatch.models import Feed
from feedwatch.pipeline import CRASH_LIMIT

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(150)]

LIMITS = {
    "FEEDWATCH_TASK_SOFT_TIME_LIMIT": "2",
    "FEEDWATCH_TASK_HARD_TIME_LIMIT": "4",
    "FEEDWATCH_FETCH_DEADLINE": "120",
    "FEEDWATCH_READ_TIMEOUT": "120",
    "FEEDWATCH_CLAIM_LEASE_SECONDS": "6",  # longer than the hard limit: no overlapping polls
}


def test_poison_feed_is_failed_as_crash_and_others_flow(
    tmp_path: Path, feed_server: GatedFeedServer, stacks: list[Stack]
) -> None:
    feed_server.bodies["/good.xml"] = story_feed("a")
    feed_server.hang("/poison.xml")
    feeds = tmp_path / "feeds.toml"
    feeds.write_text(
        f'[[feeds]]\nurl = "{feed_server.url("/poison.xml")}"\ninterval_minutes = 2\n\n'
        f'[[feeds]]\nurl = "{feed_server.url("/good.xml")}"\ninterval_minutes = 0.05\n'
    )
    stack = Stack(tmp_path, feeds, None, **LIMITS)  # embedded: SQLite + filesystem broker
    stacks.append(stack)
    worker = stack.worker("-c", "2")

    def poison() -> Feed | None:
        return next((f for f in stack.feeds() if f.url.endswith("/poison.xml")), None)

    wait_for(lambda: getattr(poison(), "error_class", None) == "crash", 100, "the crash verdict", worker)
    stack.wait_delivered(1, worker)

    feed = poison()
    assert feed is not None and feed.state in ("backing_off", "failing")
    assert feed_server.hits["/poison.xml"] == CRASH_LIMIT  # bounded: then marked, not polled
    good = next(f for f in stack.feeds() if f.url.endswith("/good.xml"))
    assert good.error_class is None and good.last_ok_at is not None
    assert stack.lines_per_key().most_common(1)[0][1] == 1
    assert worker.alive()
    log = worker.output()
    assert "TimeLimitExceeded" in log  # the configured time limits really ended the polls
    feed_server.release_all()  # the worker stops without waiting for a hung poll
