"""Task entrypoints: decode the message, take this process's context, call one function.

Messages carry ids only. Every task is idempotent (see feedwatch.store), which is what makes
``acks_late`` + ``task_reject_on_worker_lost`` safe.
"""

from __future__ import annotations

import random
from typing import Any

import structlog
from celery import Task

from feedwatch import alerts, db, pipeline, stories
from feedwatch.channels import Channel, build_channels
from feedwatch.settings import get_settings
from feedwatch.timeutil import utcnow
from workers.app import MAX_COUNTDOWN, app

_context: pipeline.Context | None = None
_channels: list[Channel] | None = None


def context() -> pipeline.Context:
    """This process's pipeline context, built lazily in the worker child (never at import)."""
    global _context
    if _context is None:
        _context = pipeline.Context(
            settings=get_settings(),
            publish_alert=lambda ids: publish(deliver_alert, ids),
            publish_poll=lambda ids: publish(poll_feed, ids),
            publish_article=lambda ids: publish(fetch_article, ids),
        )
    return _context


def publish(task: Task, ids: list[int], **options: Any) -> Any:
    """Send ``task`` a list of ids, with the ``argsrepr`` Celery shows (``celery inspect``,
    Flower, events) made by ``repr`` and cut at Celery's limit. Celery makes it with
    ``saferepr``, a walk in Python: ~0.25–0.4 ms of a ~1.3 ms publish for 100 ids, on every
    poll message the tick sends (round 21 in docs/performance-history.md). For a poll batch's
    ids the two give the same text (tests/unit/test_publish.py)."""
    args = (ids,)
    shown, most = repr(args), app.amqp.argsrepr_maxsize
    if len(shown) > most:
        shown = shown[: most - 3] + "..."
    return task.apply_async(args, argsrepr=shown, **options)


def channels() -> list[Channel]:
    global _channels
    if _channels is None:
        _channels = build_channels(get_settings())
    return _channels


@app.task(name="feedwatch.schedule_tick", acks_late=False)
def schedule_tick() -> dict[str, int]:
    report = pipeline.tick(context())
    return {"claimed": report.claimed, "alerts_requeued": report.alerts_requeued}


@app.task(name="feedwatch.db_upkeep", acks_late=False)
def db_upkeep() -> dict[str, Any]:
    """The keys of stories past their window deleted (``stories.prune_keys``), then what
    autovacuum would do where PostgreSQL's is off (``db.upkeep``: VACUUM and ANALYZE of the
    tables past the server's thresholds; ``vacuum`` is None elsewhere), the story keys' table
    among the vacuumed when keys went."""
    settings = get_settings()
    with db.session_scope(settings) as session:
        pruned = stories.prune_keys(session, utcnow(), stories.StoryPolicy.from_settings(settings))
    done = db.upkeep(settings, vacuum=(stories.KEYS_TABLE,) if pruned else ())
    structlog.get_logger().info("db.upkeep", story_keys_pruned=pruned, **(done or {}))
    return {"story_keys_pruned": pruned, "vacuum": done}


@app.task(name="feedwatch.poll_feed")
def poll_feed(feed_ids: list[int] | int) -> dict[str, Any]:
    ids = [feed_ids] if isinstance(feed_ids, int) else [int(i) for i in feed_ids]
    structlog.contextvars.bind_contextvars(batch_size=len(ids))
    reports = pipeline.poll_feeds(context(), ids)
    return {"feeds": len(reports), "new": sum(r.new for r in reports)}


@app.task(name="feedwatch.fetch_article")
def fetch_article(article_ids: list[int] | int) -> dict[str, Any]:
    ids = [article_ids] if isinstance(article_ids, int) else [int(i) for i in article_ids]
    structlog.contextvars.bind_contextvars(batch_size=len(ids))
    reports = pipeline.process_articles(context(), ids)
    return {"articles": len(reports), "alerts": sum(r.alert_id is not None for r in reports)}


@app.task(name="feedwatch.deliver_alert", bind=True, max_retries=alerts.MAX_ATTEMPTS * 2 + 2)
def deliver_alert(self: Task, alert_ids: list[int] | int) -> dict[str, int]:
    ids = [alert_ids] if isinstance(alert_ids, int) else [int(i) for i in alert_ids]
    structlog.contextvars.bind_contextvars(batch_size=len(ids))
    ctx = context()
    batch = alerts.deliver_many(ids, channels(), ctx.settings, ctx.clock)
    if batch.retry_ids and batch.retry_in is not None:
        # Each (alert, channel) keeps its own backoff; the alerts still waiting come back in one
        # message when the earliest is due (a later one is skipped then and waits again). The
        # tick re-sends a queued alert whose retries ran out (alert_requeue_seconds).
        exc = alerts.DeliveryIncomplete(f"alerts {batch.retry_ids}: retried in {batch.retry_in:.0f}s")
        countdown = min(MAX_COUNTDOWN, batch.retry_in) * random.uniform(1.0, 1.1)
        raise self.retry(args=(batch.retry_ids,), exc=exc, countdown=countdown)
    statuses = [r.status for r in batch.reports]
    return {s: statuses.count(s) for s in sorted(set(statuses))}


@app.task(name="feedwatch.send_digests", acks_late=False)
def send_digests() -> dict[str, int]:
    ctx = context()
    reports = alerts.send_digests(channels(), ctx.settings, ctx.clock)
    return {"sent": sum(r.sent for r in reports), "failed": sum(not r.sent for r in reports)}
