"""Redis outages against a PRIVATE redis-server (never the machine's shared one).

The outbox promise: a broker outage delays an alert, never loses it. Articles are committed with
their alert rows whatever the broker does; the beat's tick re-publishes what is pending (no
message went out) or queued too long (the message may be gone with a Redis that keeps nothing).
The worker rides the outage out: no restart, the same pid before and after.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.faults import GatedFeedServer, PrivateRedis, story_feed
from support.feeds import write_feeds_toml
from support.services import ServiceProcess, wait_for
from support.stack import Stack

from feedwatch.models import Alert, Article, Heartbeat

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(150)]

FREEZE_SECONDS = 20


def _ingest(stack: Stack, url: str) -> tuple[int, float]:
    """``feedwatch ingest URL`` in its own process; its exit code and how long it took."""
    started = time.monotonic()
    proc = stack.cli("ingest", url)
    proc.proc.wait(90)
    return proc.proc.returncode, time.monotonic() - started


def _alert_for(stack: Stack, feed: str) -> Alert:
    """The alert of the story in feed ``feed`` (its guid is ``<feed>-story``)."""
    articles = {a.id: a for a in stack.articles()}
    found = [a for a in stack.alerts() if articles[a.article_id].guid == f"{feed}-story"]
    assert len(found) == 1, found
    return found[0]


def _feeds(tmp_path: Path, server: GatedFeedServer) -> Path:
    for name in ("a", "b", "c"):
        server.bodies[f"/{name}.xml"] = story_feed(name)
    return write_feeds_toml(tmp_path / "feeds.toml", [server.url("/a.xml")], interval_minutes=60)


def _wait_ticking_after(stack: Stack, moment: float, proc: ServiceProcess) -> None:
    def ticked() -> bool:
        beats = stack.rows(Heartbeat)
        return any(b.name == "beat" and b.at.timestamp() > moment for b in beats)

    wait_for(ticked, 60, "beat to tick again", proc)


def test_redis_lost_refused_and_restarted_empty(
    tmp_path: Path,
    feed_server: GatedFeedServer,
    private_redis: PrivateRedis,
    pg_url: str,
    stacks: list[Stack],
) -> None:
    feeds = _feeds(tmp_path, feed_server)
    stack = Stack(tmp_path, feeds, pg_url, FEEDWATCH_BROKER_URL=private_redis.url())
    stacks.append(stack)
    private_redis.start()

    # 1. An alert is committed and its message published while no worker runs; then Redis dies
    #    and comes back empty (no persistence): the message is gone, the outbox row is not.
    code, _ = _ingest(stack, feed_server.url("/b.xml"))
    assert code == 0
    assert _alert_for(stack, "b").status == "queued"
    private_redis.kill()
    private_redis.start()

    worker = stack.worker("-c", "1")
    stack.wait_delivered(2, worker)  # /a.xml from the feed list, /b.xml re-queued by the tick
    pid = worker.pid

    # 2. Redis refuses connections while a story is ingested: the commit succeeds, the alert
    #    waits as pending; the worker keeps running.
    private_redis.stop()
    code, _ = _ingest(stack, feed_server.url("/c.xml"))
    assert code == 0
    assert _alert_for(stack, "c").status == "pending"
    assert len(stack.articles()) == 9
    time.sleep(3)  # let the worker and its beat meet the refused connections
    assert worker.alive()

    restarted = time.time()
    private_redis.start()
    stack.wait_delivered(3, worker, timeout=90)
    _wait_ticking_after(stack, restarted, worker)
    assert worker.alive() and worker.pid == pid
    lines = stack.lines_per_key()
    assert sorted(lines.values()) == [1, 1, 1], lines


def test_redis_frozen(
    tmp_path: Path,
    feed_server: GatedFeedServer,
    private_redis: PrivateRedis,
    pg_url: str,
    stacks: list[Stack],
) -> None:
    feeds = _feeds(tmp_path, feed_server)
    stack = Stack(tmp_path, feeds, pg_url, FEEDWATCH_BROKER_URL=private_redis.url())
    stacks.append(stack)
    private_redis.start()
    worker = stack.worker("-c", "1")
    stack.wait_delivered(1, worker)

    frozen_at = time.monotonic()
    private_redis.freeze()
    code, publish_seconds = _ingest(stack, feed_server.url("/b.xml"))
    # The publish gave up (socket timeouts) instead of hanging: the alert waits in the outbox.
    assert code == 0
    assert _alert_for(stack, "b").status == "pending"
    print(f"\npublish against a frozen Redis gave up after {publish_seconds:.1f} s")
    time.sleep(max(0.0, FREEZE_SECONDS - (time.monotonic() - frozen_at)))
    assert worker.alive()
    thawed = time.time()
    private_redis.thaw()

    stack.wait_delivered(2, worker, timeout=90)
    _wait_ticking_after(stack, thawed, worker)
    recovered = time.time() - thawed
    print(f"worker delivered the waiting alert {recovered:.1f} s after SIGCONT")
    assert worker.alive()
    assert sorted(stack.lines_per_key().values()) == [1, 1]
    assert len(stack.rows(Article)) == 6
    # The reconnected consumer did not mingle (workers.consumer.Consumer; gossip, which logs
    # nothing here, is checked in tests/unit/test_worker_consumer.py).
    assert "mingle:" not in worker.output()
