"""Two beats at once: each feed is polled once per slot, counted at the feed server.

A "slot" is one due time: the feeds are due once an hour, and the test opens a new slot by
making every feed due now (one UPDATE), then counts hits. With the leader lock (workers/beat.py)
only one beat sends ticks, and the standby takes over when the leader is SIGKILLed. Without it
(both beats on Celery's plain scheduler, ticking every half second) both send ticks, and the
database claim (``store.claim_due_feeds``) still lets exactly one poll through per slot.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.faults import GatedFeedServer, story_feed
from support.feeds import write_feeds_toml
from support.services import ServiceProcess, wait_for
from support.stack import Stack

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(150)]

NAMES = ("a", "b", "c", "d")
PLAIN = ("-S", "celery.beat:PersistentScheduler")


def _stack(tmp_path: Path, server: GatedFeedServer, broker: str, pg_url: str, tick: str) -> Stack:
    for name in NAMES:
        server.bodies[f"/{name}.xml"] = story_feed(name)
    urls = [server.url(f"/{n}.xml") for n in NAMES]
    feeds = write_feeds_toml(tmp_path / "feeds.toml", urls, interval_minutes=60)
    # A lease longer than any poll here (a cold worker's first poll takes seconds): a re-claim
    # after the lease is a retry by design, not the duplicate this test hunts.
    # The hard time limit stays below the lease, as the start-up check requires.
    lease = {
        "FEEDWATCH_CLAIM_LEASE_SECONDS": "120",
        "FEEDWATCH_TASK_SOFT_TIME_LIMIT": "60",
        "FEEDWATCH_TASK_HARD_TIME_LIMIT": "90",
    }
    return Stack(tmp_path, feeds, pg_url, FEEDWATCH_BROKER_URL=broker, FEEDWATCH_TICK_SECONDS=tick, **lease)


def _slot(stack: Stack, server: GatedFeedServer, n: int, proc: ServiceProcess) -> None:
    """Open slot ``n`` (n > 1: every feed due now), wait for its polls, and a few ticks more."""
    if n > 1:
        stack.execute("UPDATE feed SET next_check_at = now()")
    paths = [f"/{name}.xml" for name in NAMES]
    wait_for(lambda: all(server.hits[p] >= n for p in paths), 60, f"slot {n} polls", proc)
    time.sleep(3)  # several more ticks from both beats: none may poll again
    assert {p: server.hits[p] for p in paths} == dict.fromkeys(paths, n)


def _sent_ticks(beat: ServiceProcess) -> int:
    return beat.output().count("Sending due task schedule-tick")


def test_duplicate_ticks_poll_each_feed_once_per_slot(
    tmp_path: Path, feed_server: GatedFeedServer, broker: str, pg_url: str, stacks: list[Stack]
) -> None:
    stack = _stack(tmp_path, feed_server, broker, pg_url, tick="0.5")
    stacks.append(stack)
    worker = stack.worker("--no-beat", "-c", "2")
    beats = [stack.beat(*PLAIN), stack.beat(*PLAIN)]
    stack.wait_delivered(len(NAMES), worker)
    _slot(stack, feed_server, 1, worker)
    _slot(stack, feed_server, 2, worker)
    assert all(_sent_ticks(b) >= 5 for b in beats), "both beats must really have ticked"
    assert sorted(stack.lines_per_key().values()) == [1] * len(NAMES)


def test_leader_lock_one_beat_ticks_standby_takes_over(
    tmp_path: Path, feed_server: GatedFeedServer, broker: str, pg_url: str, stacks: list[Stack]
) -> None:
    stack = _stack(tmp_path, feed_server, broker, pg_url, tick="1")
    stacks.append(stack)
    worker = stack.worker("--no-beat", "-c", "2")
    first = stack.beat()
    wait_for(lambda: "beat.leader" in first.output(), 60, "the first beat to lead", first)
    second = stack.beat()
    stack.wait_delivered(len(NAMES), worker)
    _slot(stack, feed_server, 1, worker)
    assert _sent_ticks(second) == 0 and "beat.leader" not in second.output()

    first.kill()  # SIGKILL: the lock is not released, it expires
    killed_at = time.monotonic()
    wait_for(lambda: "beat.leader" in second.output(), 60, "the standby to take over", second)
    print(f"\nstandby beat took over {time.monotonic() - killed_at:.1f} s after the leader's SIGKILL")
    _slot(stack, feed_server, 2, worker)
    assert _sent_ticks(second) > 0
