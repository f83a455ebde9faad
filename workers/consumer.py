"""The worker's consumer: Celery's, without the steps that can stall it after a broker outage."""

from __future__ import annotations

from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Celery's consumer without the mingle and gossip steps, however the worker is started
    (``celery worker`` and ``feedwatch run`` alike: ``worker_consumer`` in workers/app.py).

    Mingle asks the other workers for revoked task ids and clocks at every (re)connection;
    gossip subscribes each worker to the others' events. feedwatch revokes nothing and reads no
    worker events (``feedwatch status`` asks through the broadcast queue, which stays), and
    both run again when the consumer reconnects to Redis: Celery's known way to stop
    consuming after a broker outage (celery/celery#8030, #8082, #10205: reconnected, "ready",
    and no task taken). A fault test (a frozen Redis) met it once in CI on 2026-12-02: the
    worker reconnected, mingled with itself, said it was ready, and beat's ticks queued untaken
    for 90 s. The usual remedy is ``--without-mingle --without-gossip``; here it needs no flag.
    Heartbeats stay (Flower shows workers by them)."""

    def __init__(self, *args: Any, worker_options: dict[str, Any] | None = None, **kwargs: Any) -> None:
        options = {**(worker_options or {}), "without_mingle": True, "without_gossip": True}
        super().__init__(*args, worker_options=options, **kwargs)
