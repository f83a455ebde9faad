"""A crash between the commit and the publish: the outbox row is enough to deliver the alert.

Two ways to lose the message after the poll committed its article and alert: ``publish_alert``
raises (the broker refused), or the process dies right there (a forked child that calls
``os._exit`` from ``publish_alert``: a kill at exactly that instant). Either way the alert row
is ``pending``; the next tick after the grace re-publishes it, and delivery writes it once.
Real SQLite file and a real HTTP feed server; no broker needed.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select
from support.faults import GatedFeedServer, jsonl, story_feed

from feedwatch import alerts, db, pipeline, store
from feedwatch.channels import JsonlChannel
from feedwatch.models import Alert, Heartbeat
from feedwatch.settings import Settings
from feedwatch.sources import FeedSpec
from feedwatch.timeutil import utcnow

pytestmark = [pytest.mark.faults]


@pytest.fixture
def settings(tmp_path: Path, feed_server: GatedFeedServer) -> Iterator[Settings]:
    feed_server.bodies["/a.xml"] = story_feed("a")
    s = Settings(home=tmp_path / "home", allow_private_networks=True)
    db.upgrade(s)
    with db.session_scope(s) as session:
        store.sync_feeds(session, [FeedSpec(url=feed_server.url("/a.xml"))], utcnow())
    yield s
    db.dispose_engines()


def _broker_down(alert_ids: list[int]) -> None:
    raise ConnectionRefusedError("broker down")


def _die(alert_ids: list[int]) -> None:
    os._exit(9)  # killed between the commit and the publish


def _poll(settings: Settings, publish: pipeline.PublishAlert) -> None:
    db.dispose_engines()  # after a fork: this process's own connections
    pipeline.poll_feeds(pipeline.Context(settings=settings, publish_alert=publish), [1])


def _recover_and_deliver(settings: Settings) -> list[dict[str, object]]:
    published: list[int] = []
    later = utcnow() + timedelta(seconds=11)  # past the pending grace
    ctx = pipeline.Context(settings, publish_alert=published.extend, publish_poll=lambda _: None)
    ctx.clock = lambda: later
    pipeline.tick(ctx)
    assert len(published) == 1
    channel = JsonlChannel(settings.home / "alerts.jsonl")
    for alert_id in published + published:  # a duplicate message is harmless too
        alerts.deliver(alert_id, [channel], settings, utcnow)
    return jsonl(settings.home / "alerts.jsonl")


def _statuses(settings: Settings) -> list[str]:
    with db.session_scope(settings) as session:
        return [a.status for a in session.exec(select(Alert)).all()]


def test_publish_raises_after_commit(settings: Settings) -> None:
    _poll(settings, _broker_down)
    assert _statuses(settings) == ["pending"]
    lines = _recover_and_deliver(settings)
    assert [line["idempotency_key"] for line in lines] == ["feedwatch-alert-1"]
    assert _statuses(settings) == ["delivered"]


def test_process_killed_after_commit(settings: Settings) -> None:
    child = multiprocessing.get_context("fork").Process(target=_poll, args=(settings, _die))
    child.start()
    child.join(60)
    assert child.exitcode == 9
    assert _statuses(settings) == ["pending"]
    lines = _recover_and_deliver(settings)
    assert [line["idempotency_key"] for line in lines] == ["feedwatch-alert-1"]
    assert _statuses(settings) == ["delivered"]


def test_the_tick_sweeps_the_outbox_at_most_every_sweep_seconds(settings: Settings) -> None:
    """Claims run on every tick; the re-send of lost messages at most every ``sweep_seconds``,
    gated by the ``beat`` heartbeat. A sweep stamp ahead of the tick's clock does not hold it off."""
    settings = settings.model_copy(update={"sweep_seconds": 30.0})
    _poll(settings, _broker_down)
    published: list[int] = []
    now = utcnow()
    clock = [now]
    ctx = pipeline.Context(settings, publish_alert=published.extend, publish_poll=lambda _: None)
    ctx.clock = lambda: clock[0]

    def tick_at(seconds: float) -> pipeline.TickReport:
        clock[0] = now + timedelta(seconds=seconds)
        return pipeline.tick(ctx)

    first = tick_at(1)  # the first tick sweeps; the alert is still inside its 10 s grace
    assert (first.swept, published) == (True, [])
    held = tick_at(12)  # past the grace, but within 30 s of the last sweep
    assert (held.swept, held.alerts_requeued, published) == (False, 0, [])
    assert _statuses(settings) == ["pending"]
    swept = tick_at(32)
    assert (swept.swept, swept.alerts_requeued, published) == (True, 1, [1])
    assert _statuses(settings) == ["queued"]
    with db.session_scope(settings) as session:
        beat = session.get(Heartbeat, "beat")
        assert beat is not None and beat.detail["requeue"] == 1
    assert tick_at(20).swept  # a clock behind the last sweep's stamp: swept again, not held
