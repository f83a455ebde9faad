"""Worker start-up checks and pool limits: refused configurations, recycled children.

The worker refuses a configuration under which a running task could start again (Redis
redelivery before the hard limit, or a feed claim that expires before its poll must end), and a
pool child over FEEDWATCH_WORKER_MAX_MEMORY_PER_CHILD_KB is really replaced. Task events are
published only when FEEDWATCH_TASK_EVENTS asks for them.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from celery import Celery
from support.faults import PrivateRedis, children
from support.feeds import write_feeds_toml
from support.services import ServiceProcess, wait_for
from support.stack import Stack

from feedwatch.settings import Settings
from workers.app import check_config

pytestmark = [pytest.mark.faults]


def test_visibility_timeout_below_the_hard_limit_refuses_to_start(tmp_path: Path) -> None:
    feeds = write_feeds_toml(tmp_path / "feeds.toml", ["http://127.0.0.1:9/none.xml"])
    stack = Stack(
        tmp_path,
        feeds,
        None,
        FEEDWATCH_BROKER_URL="redis://127.0.0.1:9/0",  # never reached: the check comes first
        FEEDWATCH_VISIBILITY_TIMEOUT="100",
    )
    proc = stack.worker("-c", "1")
    try:
        assert proc.proc.wait(60) != 0
    finally:
        stack.stop()
    assert "FEEDWATCH_VISIBILITY_TIMEOUT=100s must exceed" in proc.output()


def test_claim_lease_not_above_the_hard_limit_refuses_to_start(tmp_path: Path) -> None:
    feeds = write_feeds_toml(tmp_path / "feeds.toml", ["http://127.0.0.1:9/none.xml"])
    stack = Stack(
        tmp_path,
        feeds,
        None,  # embedded mode: the lease check holds on every broker
        FEEDWATCH_CLAIM_LEASE_SECONDS="8",
        FEEDWATCH_TASK_SOFT_TIME_LIMIT="6",
        FEEDWATCH_TASK_HARD_TIME_LIMIT="8",
    )
    proc = stack.worker("-c", "1", "--articles-pool", "0")
    try:
        assert proc.proc.wait(60) != 0
    finally:
        stack.stop()
    assert "FEEDWATCH_CLAIM_LEASE_SECONDS=8s must exceed FEEDWATCH_TASK_HARD_TIME_LIMIT=8s" in proc.output()


def test_claim_lease_check_message() -> None:
    settings = Settings(claim_lease_seconds=150, task_hard_time_limit=150, task_soft_time_limit=120)
    with pytest.raises(RuntimeError, match="polled again"):
        check_config(settings)
    check_config(Settings(claim_lease_seconds=151, task_hard_time_limit=150, task_soft_time_limit=120))


def test_max_memory_per_child_recycles_the_pool_child(tmp_path: Path) -> None:
    """A child above FEEDWATCH_WORKER_MAX_MEMORY_PER_CHILD_KB is replaced after its task.

    No feeds are needed: the embedded beat's tick (every second) is the task. Any Python child
    is above 1 MB, so each task ends its child; the worker itself stays up.
    """
    feeds = write_feeds_toml(tmp_path / "feeds.toml", [])
    stack = Stack(tmp_path, feeds, None, FEEDWATCH_WORKER_MAX_MEMORY_PER_CHILD_KB="1000")
    worker = stack.worker("-c", "1", "--articles-pool", "0")
    try:
        seen: set[int] = set()
        wait_for(lambda: len(children(worker.pid)) >= 2, 60, "the pool child and the beat", worker)
        first = set(children(worker.pid))

        def recycled() -> bool:
            seen.update(children(worker.pid))
            # -c 1 and one embedded beat: two pids more than at first are two replaced children
            return len(seen) >= len(first) + 2 and not first <= set(children(worker.pid))

        wait_for(recycled, 60, "pool children to be replaced", worker)
        assert worker.alive()
    finally:
        stack.stop()


def _event_types(redis_url: str, worker: ServiceProcess, heartbeats: int) -> Counter[str]:
    """The types of the Celery events published on the worker's broker until it has sent
    ``heartbeats`` worker heartbeats (every 2 s; the embedded beat ticks every second), read with
    Celery's own event receiver, the one ``celery events`` and Flower use."""
    app = Celery(broker=redis_url)
    seen: Counter[str] = Counter()
    deadline = time.monotonic() + 90
    with app.connection_for_read() as connection:
        receiver = app.events.Receiver(connection, handlers={"*": lambda event: seen.update([event["type"]])})
        for _ in receiver.itercapture(timeout=30, wakeup=False):
            assert time.monotonic() < deadline, f"{dict(seen)}\n{worker.output()}"
            if seen["worker-heartbeat"] >= heartbeats:
                break
    return seen


@pytest.mark.parametrize("events", [False, True])
def test_task_events_only_when_asked(tmp_path: Path, private_redis: PrivateRedis, events: bool) -> None:
    """Workers publish task events only with FEEDWATCH_TASK_EVENTS; their heartbeats (which
    ``celery events`` and Flower read too) either way. The embedded beat's ticks are the tasks."""
    private_redis.start()
    feeds = write_feeds_toml(tmp_path / "feeds.toml", [])
    env = {"FEEDWATCH_BROKER_URL": private_redis.url()}
    if events:
        env["FEEDWATCH_TASK_EVENTS"] = "true"
    stack = Stack(tmp_path, feeds, None, **env)
    worker = stack.worker("-c", "1", "--articles-pool", "0")
    try:
        wait_for(lambda: "ready" in worker.output(), 60, "the worker", worker)
        seen = _event_types(private_redis.url(), worker, heartbeats=3)
    finally:
        stack.stop()
    tasks = {kind for kind in seen if kind.startswith("task-")}
    if events:
        assert {"task-received", "task-started", "task-succeeded"} <= tasks, dict(seen)
    else:
        assert not tasks, dict(seen)
