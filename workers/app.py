"""The Celery application: configuration, queues, routes and the beat schedule.

Every setting here serves at-least-once delivery with idempotent effects (see
docs/reliability.md): late acks, rejected-on-worker-lost redelivery, prefetch of one, bounded
socket timeouts, hard time limits below the broker's visibility timeout.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from celery import Celery, signals
from kombu import Queue  # type: ignore[attr-defined]

from feedwatch.settings import QUEUES, Settings, get_settings

#: The queues a worker consumes because it consumes another (``consumed_queues``).
FOLLOWERS = {"feeds": ("upkeep",)}
#: Longest countdown a task schedules for itself (deliver_alert's retry backoff), in seconds.
MAX_COUNTDOWN = 300


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    if settings.is_filesystem_broker:
        queue_dir = settings.broker_dir / "queue"
        control_dir = settings.broker_dir / "control"
        for folder in (queue_dir, control_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "control_folder": str(control_dir),
            "store_processed": False,
            # kombu lists the folder once a second by default, and a worker takes one message
            # per listing (prefetch 1): that capped the embedded service near one poll batch a
            # second (benchmarks/run.py, docs/performance.md). A listing costs ~1 ms.
            "polling_interval": 0.05,
        }
    return {
        "visibility_timeout": settings.visibility_timeout,
        # A publish to a frozen Redis must give up in seconds, not minutes: the outbox retries
        # it, and a worker stuck in a publish holds a pool process (measured against SIGSTOP:
        # 10 s + retry_on_timeout + 2 publish retries blocked a tick for 140 s; now ~10 s).
        "socket_timeout": 5,
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        "retry_on_timeout": False,
        "health_check_interval": 25,
        "max_retries": 3,
    }


def check_config(settings: Settings) -> None:
    """Refuse to start when a running task could be started again (docs/reliability.md)."""
    problems = []
    longest = settings.task_hard_time_limit + MAX_COUNTDOWN
    if not settings.is_filesystem_broker and settings.visibility_timeout <= longest:
        problems.append(
            f"FEEDWATCH_VISIBILITY_TIMEOUT={settings.visibility_timeout}s must exceed the hard "
            f"time limit plus the longest countdown ({longest}s), or Redis redelivers running tasks"
        )
    # A poll runs at most the hard time limit; a lease that ends sooner lets the next tick claim
    # and poll the feed again while the first poll is still running.
    if settings.claim_lease_seconds <= settings.task_hard_time_limit:
        problems.append(
            f"FEEDWATCH_CLAIM_LEASE_SECONDS={settings.claim_lease_seconds}s must exceed "
            f"FEEDWATCH_TASK_HARD_TIME_LIMIT={settings.task_hard_time_limit}s, or a feed still "
            "being polled is claimed and polled again"
        )
    if problems:
        raise RuntimeError("; ".join(problems))


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("feedwatch", include=["workers.tasks"])
    # kombu warns on every connection when a filesystem URL names no host; name the only one.
    broker_url = "filesystem://localhost/" if settings.is_filesystem_broker else settings.broker_url
    app.conf.update(
        broker_url=broker_url,
        # kombu's filesystem transport with atomic publishes (workers/fsbroker.py says why).
        broker_transport="workers.fsbroker:Transport" if settings.is_filesystem_broker else None,
        broker_transport_options=broker_transport_options(settings),
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        broker_heartbeat=0,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_hard_time_limit,
        worker_max_memory_per_child=settings.worker_max_memory_per_child_kb,
        # Mingle and gossip off, however the worker is started (workers/consumer.py says why);
        # by name, so only a worker imports Celery's consumer.
        worker_consumer="workers.consumer:Consumer",
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        # Three events a task, published by the worker's main process to a fanout nobody reads
        # unless Flower or `celery events` runs (Flower sends `enable_events` every few seconds
        # while it runs, so it sees them anyway): a third of a feeds worker's main process at
        # capacity, ~3 % of the worker (docs/performance-history.md, round 14).
        worker_send_task_events=settings.task_events,
        task_send_sent_event=False,
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        task_default_queue="default",
        task_queues=[Queue(name, routing_key=name) for name in QUEUES],  # type: ignore[no-untyped-call]
        task_routes={
            "feedwatch.schedule_tick": {"queue": "default", "routing_key": "default"},
            "feedwatch.poll_feed": {"queue": "feeds", "routing_key": "feeds"},
            "feedwatch.deliver_alert": {"queue": "alerts", "routing_key": "alerts"},
            # Full text runs on its own queue and workers: a slow page never delays polling.
            "feedwatch.fetch_article": {"queue": "articles", "routing_key": "articles"},
            "feedwatch.send_digests": {"queue": "alerts", "routing_key": "alerts"},
            # A queue of its own, which every feeds worker consumes (``FOLLOWERS``) and no alerts
            # worker does: where autovacuum is off its VACUUM can take seconds (0.5-4.0 s a run in
            # a benchmark run, whose tables grow from empty), and on an alerts process it held
            # every delivery that long (round 60); in the `feeds` queue it waited behind the whole
            # backlog of poll batches, and expired unrun behind a minute of them (round 61).
            # Its own queue is taken at a feeds process's next free turn: kombu's Redis
            # transport asks a worker's queues in turn, the one it last took from last.
            "feedwatch.db_upkeep": {"queue": "upkeep", "routing_key": "upkeep"},
        },
        beat_schedule={
            "schedule-tick": {
                "task": "feedwatch.schedule_tick",
                "schedule": settings.tick_seconds,
                # A stale tick is worthless: a backlog never stacks more than a few ticks. At
                # least 1 s, so a clock a few hundred ms apart between hosts expires none.
                "options": {"expires": max(settings.tick_seconds, 1.0), "queue": "default"},
            },
            # Digests and burst summaries; each run sends what is due, so a missed one costs nothing.
            "send-digests": {
                "task": "feedwatch.send_digests",
                "schedule": settings.digest_check_seconds,
                "options": {"expires": settings.digest_check_seconds, "queue": "alerts"},
            },
            # The story keys past their window deleted, on every database; VACUUM and ANALYZE where
            # PostgreSQL's autovacuum is off (workers.tasks.db_upkeep).
            **(
                {
                    "db-upkeep": {
                        "task": "feedwatch.db_upkeep",
                        "schedule": settings.db_upkeep_seconds,
                        "options": {"expires": settings.db_upkeep_seconds, "queue": "upkeep"},
                    }
                }
                if settings.db_upkeep_seconds > 0
                else {}
            ),
        },
        beat_schedule_filename=str(settings.home / "celerybeat-schedule"),
        # Exactly one beat sends ticks on a shared broker: see workers/beat.py. The filesystem
        # broker is one host's embedded mode, where `feedwatch run` owns the only beat.
        beat_scheduler=(
            "celery.beat:PersistentScheduler"
            if settings.is_filesystem_broker
            else "workers.beat:LeaderScheduler"
        ),
        beat_max_loop_interval=settings.tick_seconds,
        timezone="UTC",
        enable_utc=True,
    )
    return app


app = create_app()


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    from feedwatch.logs import configure_logging

    configure_logging(get_settings())


@signals.worker_init.connect
@signals.beat_init.connect
def _check_on_start(**_: Any) -> None:
    check_config(get_settings())


def consumed_queues(selected: Iterable[str]) -> list[str]:
    """The queues a worker started with ``-Q selected`` consumes: those, and each one's
    ``FOLLOWERS`` (a feeds worker takes the database upkeep, however it was started: a
    deployment that left ``upkeep`` out of its workers' ``-Q`` would otherwise never run it)."""
    names = list(dict.fromkeys(selected))
    for name in list(names):
        names += [f for f in FOLLOWERS.get(name, ()) if f not in names]
    return names


@signals.celeryd_after_setup.connect
def _follow_queues(instance: Any = None, **_: Any) -> None:
    # Sent once ``-Q`` has been applied, before the consumer starts (Celery's documented place
    # to add a queue whatever ``-Q`` says); ``consume_from`` then names every queue consumed.
    if instance is None:
        return
    queues = instance.app.amqp.queues
    for name in consumed_queues(queues.consume_from):
        if name not in queues.consume_from:
            queues.select_add(name)


@signals.worker_init.connect
def _warm_up(sender: Any = None, **_: Any) -> None:
    # Runs in the parent before the prefork pool forks: the stages and the language model loaded
    # here are shared by the children copy-on-write (PSS), not loaded once per child. gc.freeze
    # keeps the children's collections from touching (and so copying) the parent's objects.
    # The children inherit the collector's thresholds (feedwatch.pipeline.GC_THRESHOLDS).
    import gc

    from feedwatch import pipeline

    gc.set_threshold(*pipeline.GC_THRESHOLDS)
    consumed = sender.app.amqp.queues.consume_from if sender is not None else None
    if consumed and not {"feeds", "articles"} & set(consumed):
        return  # alerts/default only: never detects a language
    from feedwatch import normalize

    normalize.warm_up()
    gc.freeze()


@signals.before_task_publish.connect
def _stamp_sent_at(headers: dict[str, Any] | None = None, **_: Any) -> None:
    # Lets `feedwatch status` tell the age of the oldest waiting message on Redis.
    if headers is not None:
        headers.setdefault("sent_at", time.time())


@signals.worker_process_init.connect
def _after_fork(**_: Any) -> None:
    # Pooled connections must not cross a fork: each child builds its own.
    from feedwatch.db import dispose_engines

    dispose_engines()


@signals.task_prerun.connect
def _bind_task(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    import structlog

    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task=getattr(task, "name", None))


@signals.task_postrun.connect
def _unbind_task(**_: Any) -> None:
    import structlog

    structlog.contextvars.clear_contextvars()
