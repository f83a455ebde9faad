"""Feed rows as a parse leaves them (item spans, fingerprints, a 20-entry history), polled round
after round as the service writes them: the tick's claim (``store.claim_due_feeds``), the
batch's read of its rows (``store.feed_columns``) and its state update (``store.update_feeds``).
On PostgreSQL, with autovacuum off for the feed table, so that only what a test runs cleans it
(``tests/integration/test_schema.py``, ``test_db_upkeep.py``)."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session

from feedwatch import store
from support.plans import add_feeds

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
HISTORY = [
    {"at": (NOW - timedelta(minutes=10 * i)).isoformat(), "outcome": "not_modified", "status": 304, "n": 1}
    for i in range(20)
]


def seed(engine: Engine, feeds: int) -> list[int]:
    """``feeds`` feed rows of ~2.5 KB, all due at :data:`NOW`; their ids."""
    with engine.connect() as conn:
        conn.exec_driver_sql("ALTER TABLE feed SET (autovacuum_enabled = false)")
        add_feeds(conn.exec_driver_sql, feeds)
        conn.commit()
    rng, ids = random.Random(48), list(range(1, feeds + 1))
    parsed = {"poll_history": HISTORY, "next_check_at": NOW}
    with Session(engine) as session:
        store.update_feeds(
            session,
            [
                (i, {"item_spans": rng.randbytes(1220), "entry_fingerprints": rng.randbytes(400), **parsed})
                for i in ids
            ],
        )
        session.commit()
    return ids


def poll(
    engine: Engine, ids: list[int], rounds: int, before_round: Callable[[], None] | None = None
) -> datetime:
    """``rounds`` polls of every feed in ``ids``, each a 304: claimed, read, its state written
    and its next poll set 1 to 9 minutes on; the rounds ten minutes apart from :data:`NOW`.
    Two new versions of each row a round, each with an entry in ``next_check_at``'s index, as a
    service's polls leave them: spread over the times they fall due, so each time's index pages
    take no more entries once it has passed. ``before_round`` is called before each round. When
    all the feeds are due again."""
    rng = random.Random(rounds)
    for n in range(rounds):
        if before_round is not None:
            before_round()
        now = NOW + timedelta(minutes=10 * n)
        with Session(engine) as session:
            claimed = store.claim_due_feeds(session, now, limit=len(ids), lease_seconds=30)
            session.commit()
        assert [c.id for c in claimed] == ids
        with Session(engine) as session:
            store.feed_columns(session, ids, store.POLL_COLUMNS)
            entry = {"at": now.isoformat(), "outcome": "not_modified"}
            history = [*HISTORY[1:], entry]
            store.update_feeds(
                session,
                [
                    (
                        i,
                        {
                            "poll_history": history,
                            "next_check_at": now + timedelta(seconds=rng.uniform(60, 540)),
                            "claimed_at": None,
                        },
                    )
                    for i in ids
                ],
            )
            session.commit()
    return NOW + timedelta(minutes=10 * rounds)
