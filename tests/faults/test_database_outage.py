"""PostgreSQL stopped and restarted under a running worker (a PRIVATE cluster, never the shared one).

The stop lands while a poll is in flight (the feed server parks the response, the test stops the
database, then lets the body through): that poll's transaction cannot commit, so nothing of it is
stored, neither the article nor its alert. The claim lease makes the feed due again; once the
database is back the same worker (no restart) stores the story with its alert and delivers it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.faults import STORIES, GatedFeedServer, PrivatePostgres
from support.feeds import item, rss, write_feeds_toml
from support.services import wait_for
from support.stack import Stack

from feedwatch.models import Alert, Article, Heartbeat

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(150)]


def _feed(*names: str) -> bytes:
    return rss([item(f"{n}-story", *STORIES[n], f"https://example.org/{n}/story") for n in names])


def test_postgres_restart_mid_poll(
    tmp_path: Path,
    feed_server: GatedFeedServer,
    private_pg: PrivatePostgres,
    broker: str,
    stacks: list[Stack],
) -> None:
    private_pg.start()
    feed_server.bodies["/live.xml"] = _feed("a")
    feeds = write_feeds_toml(tmp_path / "feeds.toml", [feed_server.url("/live.xml")], interval_minutes=0.05)
    stack = Stack(tmp_path, feeds, private_pg.url, FEEDWATCH_BROKER_URL=broker)
    stacks.append(stack)
    worker = stack.worker("-c", "2")
    stack.wait_delivered(1, worker)
    pid = worker.pid

    # The next poll sees a second story; park it, stop the database, then let the body through.
    feed_server.bodies["/live.xml"] = _feed("a", "b")
    feed_server.hold("/live.xml")
    wait_for(lambda: feed_server.parked["/live.xml"] == 1, 60, "the next poll to be parked", worker)
    private_pg.stop()
    feed_server.release("/live.xml")
    time.sleep(4)  # ticks and the parked poll meet a database that is gone
    assert worker.alive()
    assert stack.alerts() == []  # unreachable, not empty: nothing can be read or written

    restarted = time.time()
    private_pg.start()
    stack.wait_delivered(2, worker, timeout=90)
    wait_for(lambda: any(b.at.timestamp() > restarted for b in stack.rows(Heartbeat)), 30, "a tick", worker)
    assert worker.alive() and worker.pid == pid, "the worker was restarted"

    articles = stack.rows(Article)
    alerts = stack.rows(Alert)
    flagged = {a.id for a in articles if a.flagged}
    assert flagged == {a.article_id for a in alerts}, "an article without its alert, or the reverse"
    assert sorted(a.guid for a in articles) == ["a-story", "b-story"]
    assert sorted(stack.lines_per_key().values()) == [1, 1]
    log = worker.output()
    assert "OperationalError" in log  # the outage really reached the worker
