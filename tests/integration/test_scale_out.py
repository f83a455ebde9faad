"""Scale-out: two worker nodes on one Redis and one PostgreSQL share the feeds, and nothing twice.

The deployment shape of two hosts (docker-compose.yml's ``feeds`` worker, run twice): two
``celery worker -Q feeds`` processes with their own ``-n`` names, pools and connections, sharing
only the broker and the database; one beat, one ``alerts,default`` worker; feeds on a loopback
server. Twelve feeds (six with a flagged story each, six quiet), two feeds a poll message.

The split is made certain, not hoped for: the server parks the first request to one feed, so
the node that took that feed's batch is busy (one pool process, prefetch of one) while another
feed is polled, which only the other node can do. Then the feed is released and everything runs
to the end. The outcome: both nodes polled, every feed polled exactly once (its next due is an
hour away), 30 articles, six alerts, each delivered once to the JSONL channel.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session
from support.faults import STORIES, GatedFeedServer, story_feed
from support.feeds import item, rss, write_feeds_toml
from support.services import ServiceProcess, postgres_database, redis_url, wait_for
from support.stack import Stack

from feedwatch import store
from feedwatch.sources import FeedSpec
from feedwatch.timeutil import utcnow

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(180)]

REDIS_DB = 14
NODES = ("node-a", "node-b")
#: The production limits, not the fault tests' short ones: a parked poll must never outlive its
#: claim (that would be a second poll by design, not a scale-out bug). One channel: JSONL.
ENV = {
    "FEEDWATCH_ALERT_CHANNELS": "jsonl",
    "FEEDWATCH_TASK_SOFT_TIME_LIMIT": "120",
    "FEEDWATCH_TASK_HARD_TIME_LIMIT": "150",
    "FEEDWATCH_CLAIM_LEASE_SECONDS": "300",
    "FEEDWATCH_POLL_BATCH_SIZE": "2",
}


def _quiet_feed(name: str) -> bytes:
    return rss(
        [
            item(f"{name}-{i}", f"Weather and sport, part {i} ({name})", f"Nothing flagged. {name} {i}.",
                 f"https://example.org/{name}/{i}")
            for i in range(2)
        ],
        title=f"Outlet {name}",
    )  # fmt: skip


@pytest.fixture
def feed_server() -> Iterator[GatedFeedServer]:
    server = GatedFeedServer().start()
    for name in STORIES:
        server.bodies[f"/{name}.xml"] = story_feed(name)  # the story and two unrelated items
        server.bodies[f"/quiet-{name}.xml"] = _quiet_feed(f"quiet-{name}")
    yield server
    server.stop()


@pytest.fixture
def stack(tmp_path: Path, feed_server: GatedFeedServer) -> Iterator[Stack]:
    with postgres_database() as db_url:
        urls = [feed_server.url(path) for path in sorted(feed_server.bodies)]
        feeds_file = write_feeds_toml(tmp_path / "feeds.toml", urls, interval_minutes=60)
        built = Stack(tmp_path, feeds_file, db_url, FEEDWATCH_BROKER_URL=redis_url(REDIS_DB), **ENV)
        try:
            yield built
        finally:
            built.stop()  # every process it started, by pid


def _node(stack: Stack, name: str, queues: str) -> ServiceProcess:
    """One worker node as a host runs it: ``celery worker`` with its own name and pool."""
    cmd = [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", queues, "-c", "1",
           "-n", f"{name}@%h", "--loglevel", "INFO"]  # fmt: skip
    proc = ServiceProcess(cmd, stack.env, stack.tmp / f"{name}.log")
    stack.procs.append(proc)
    return proc


def _wait_ready(node: ServiceProcess) -> None:
    wait_for(lambda: " ready." in node.output(), 60, f"{node.log_path.stem} ready", node)


def _polled(node: ServiceProcess) -> list[int]:
    """Feed ids this node polled, from its ``feed.polled`` lines (a first poll is never quiet)."""
    lines = (json.loads(line) for line in node.output().splitlines() if '"feed.polled"' in line)
    return [int(line["feed_id"]) for line in lines]


def test_two_nodes_share_the_feeds_and_nothing_happens_twice(
    stack: Stack, feed_server: GatedFeedServer
) -> None:
    assert stack.cli("db", "upgrade").proc.wait(60) == 0
    specs = [FeedSpec(url=u, interval_minutes=60, min_interval_minutes=60, max_interval_minutes=60)
             for u in (feed_server.url(p) for p in sorted(feed_server.bodies))]  # fmt: skip
    with Session(stack.engine) as session:
        store.sync_feeds(session, specs, utcnow())
        session.commit()
    feed_ids = {f.url: int(f.id or 0) for f in stack.feeds()}
    assert len(feed_ids) == 12

    nodes = [_node(stack, name, "feeds") for name in NODES]
    alerts_worker = _node(stack, "alerts", "alerts,default")
    for proc in [*nodes, alerts_worker]:
        _wait_ready(proc)
    held = "/a.xml"
    feed_server.hold(held)
    stack.beat()  # the first tick hands all twelve feeds out, six messages of two

    wait_for(lambda: feed_server.parked[held] == 1, 60, "a poll parked on one node", nodes[0])
    # Its node is busy until the release; a third feed polled meanwhile is the other node's.
    wait_for(lambda: len(feed_server.hits) >= 3, 60, "the other node to poll", nodes[1])
    feed_server.release(held)

    wait_for(lambda: len(stack.articles()) == 30, 60, "every article stored", nodes[0])
    stack.wait_delivered(len(STORIES), alerts_worker)

    polled = {name: _polled(node) for name, node in zip(NODES, nodes, strict=True)}
    assert all(polled.values()), f"one node polled nothing: {polled}"
    every = [fid for ids in polled.values() for fid in ids]
    assert sorted(every) == sorted(feed_ids.values()), f"each feed once, by one node: {polled}"
    assert set(feed_server.hits.values()) == {1}, feed_server.hits  # no feed fetched twice

    articles = stack.articles()
    assert len({a.identity_key for a in articles}) == len(articles) == 30
    alerts = stack.alerts()
    assert len(alerts) == len(STORIES)
    assert len({a.article_id for a in alerts}) == len(alerts)
    assert all(a.status == "delivered" for a in alerts)
    deliveries = Counter((d.alert_id, d.channel) for d in stack.deliveries())
    assert set(deliveries.values()) == {1} and len(deliveries) == len(alerts)
    lines = stack.lines_per_key()  # what the JSONL channel wrote, per idempotency key
    assert len(lines) == len(STORIES) and set(lines.values()) == {1}, lines
