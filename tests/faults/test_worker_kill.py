"""SIGKILL in the middle of work: no alert lost, none delivered twice except as allowed.

Deployment shape: Redis broker (db 8), PostgreSQL, one standalone beat, one worker with one
pool process (``feedwatch run --no-beat -c 1``). Each moment is made exact, never guessed:

poll        the feed server parks the worker's request; the kill lands while it waits
deliver     the test holds the JSONL file's lock; the channel has claimed its Delivery row
            (``sending``) and blocks right before writing
after_send  as ``deliver``, but the test also row-locks the Delivery in PostgreSQL, releases the
            file: the line is written and fsynced, recording it as sent blocks; kill then

Victims: the pool child (the worker main process survives and must redeliver the message:
``acks_late`` + ``task_reject_on_worker_lost``), or the whole worker (a new one is started; the
unacked message waits for Redis's visibility timeout, so recovery comes from the database: the
feed's claim lease and the outbox's re-queue).

End state, every case: one alert, ``delivered``, one sent Delivery per channel, four articles,
the feed healthy. In alerts.jsonl: one line, except after_send, where the documented
at-least-once repeat gives two lines carrying the same idempotency key.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from support.faults import GatedFeedServer, children, file_lock, jsonl
from support.services import ServiceProcess, wait_for
from support.stack import Stack

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(120)]

#: One pool process and no separate articles worker: the worker's only child is the victim.
WORKER = ("--no-beat", "-c", "1", "--articles-pool", "0")


def _kill(stack: Stack, worker: ServiceProcess, victim: str) -> ServiceProcess:
    """Kill the victim; return the worker that must finish the job."""
    if victim == "child":
        pool = children(worker.pid)
        assert len(pool) == 1, f"expected one pool process, found {pool}"
        os.kill(pool[0], signal.SIGKILL)
        return worker
    worker.kill(signal.SIGKILL)
    worker.proc.wait(10)
    return stack.worker(*WORKER)


@contextmanager
def _row_locked(stack: Stack, channel: str) -> Iterator[None]:
    """Hold a row lock on the channel's Delivery: recording the send blocks until we let go."""
    with stack.engine.connect() as conn:
        trans = conn.begin()
        conn.execute(text("SELECT id FROM delivery WHERE channel = :c FOR UPDATE"), {"c": channel})
        yield
        trans.rollback()


@pytest.mark.parametrize(
    ("moment", "victim"),
    [
        ("poll", "child"),
        ("deliver", "child"),
        ("after_send", "child"),
        ("poll", "worker"),
        ("after_send", "worker"),
    ],
)
def test_sigkill_mid_task(
    tmp_path: Path,
    feed_server: GatedFeedServer,
    seed_feeds_file: Path,
    broker: str,
    pg_url: str,
    stacks: list[Stack],
    moment: str,
    victim: str,
) -> None:
    env = {"FEEDWATCH_BROKER_URL": broker}
    if (moment, victim) == ("poll", "child"):
        # No claim lease to fall back on: only the broker's redelivery can finish this poll.
        env["FEEDWATCH_CLAIM_LEASE_SECONDS"] = "600"
    stack = Stack(tmp_path, seed_feeds_file, pg_url, **env)
    stacks.append(stack)
    if moment == "poll":
        feed_server.hold("/seed.xml")
        worker = stack.worker(*WORKER)
        stack.beat()
        wait_for(lambda: feed_server.parked["/seed.xml"] == 1, 60, "the poll to be parked", worker)
        survivor = _kill(stack, worker, victim)
        feed_server.release("/seed.xml")
    else:
        with ExitStack() as file_held:
            file_held.enter_context(file_lock(stack.alerts_file))
            worker = stack.worker(*WORKER)
            stack.beat()
            wait_for(lambda: _status(stack, "jsonl") == "sending", 60, "the JSONL send to start", worker)
            if moment == "deliver":
                survivor = _kill(stack, worker, victim)
            else:
                with _row_locked(stack, "jsonl"):
                    file_held.close()  # the line is written; recording it waits for our row lock
                    wait_for(lambda: len(jsonl(stack.alerts_file)) == 1, 30, "the line written", worker)
                    survivor = _kill(stack, worker, victim)

    stack.wait_delivered(1, survivor)
    _assert_end_state(stack, repeated=moment == "after_send")
    assert survivor.alive()


def _status(stack: Stack, channel: str) -> str | None:
    row = stack.delivery(channel)
    return row.status if row else None


def _assert_end_state(stack: Stack, repeated: bool) -> None:
    alerts = stack.alerts()
    assert [a.status for a in alerts] == ["delivered"]
    key = f"feedwatch-alert-{alerts[0].id}"
    lines = stack.lines_per_key()
    assert lines == {key: 2 if repeated else 1}, lines
    deliveries = {d.channel: d for d in stack.deliveries()}
    assert sorted(deliveries) == ["console", "jsonl"]
    assert all(d.status == "sent" for d in deliveries.values())
    assert len(stack.articles()) == 4
    [feed] = stack.feeds()
    assert feed.state == "ok" and feed.unreported_claims == 0 and feed.error_class is None
