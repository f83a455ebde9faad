"""workers.tasks.publish: the message Celery sends, with the argsrepr it would have made."""

from __future__ import annotations

from celery.utils.saferepr import saferepr
from kombu import Connection

from workers import tasks
from workers.app import app


def _argsrepr(ids: list[int]) -> str:
    """The ``argsrepr`` header of the message ``publish`` sends, through kombu's in-memory
    transport (a connection of kombu's own: the app's would take the app's transport)."""
    with Connection("memory://") as conn:  # type: ignore[no-untyped-call]
        queue = conn.SimpleQueue("feeds")  # declared and bound before the publish
        try:
            tasks.publish(tasks.poll_feed, ids, connection=conn)
            message = queue.get(timeout=5)
            message.ack()
        finally:
            queue.close()
    assert message.headers["task"] == "feedwatch.poll_feed"
    assert message.decode()[0] == [ids]
    return str(message.headers["argsrepr"])


def test_the_ids_shown_are_those_celery_would_show() -> None:
    ids = list(range(100_000, 100_100))  # a poll batch: ~800 characters
    shown = saferepr((ids,), app.amqp.argsrepr_maxsize, maxlevels=app.conf.task_repr_maxlevels)
    assert _argsrepr(ids) == shown == repr((ids,))


def test_a_long_list_is_cut_at_celerys_limit() -> None:
    shown = _argsrepr(list(range(10_000)))
    assert len(shown) == app.amqp.argsrepr_maxsize
    assert shown.startswith("([0, 1, 2, ") and shown.endswith("...")
