"""A poll batch's feed-state write sets each row's own values (``store.update_feeds``).

On PostgreSQL the rows go as one JSON document a chunk and the poll histories apart from it, as
one ``text[]`` parameter in binary that each row indexes (round 63 in
docs/performance-history.md). These tests write chunks that mix rows with and without a new
history, across the chunk boundary, with histories that JSON and an array's text format both
escape (quotes, backslashes, control characters, non-ASCII), and read every row back; and run
the statement past psycopg's preparation (its sixth run on a connection), where PostgreSQL may
plan it generically.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select
from support.settings import database_settings

from feedwatch import db, store
from feedwatch.models import Feed
from feedwatch.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NOW = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
FEEDS = store.INSERT_CHUNK * 2 + 50  # three statements, the last one short


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    with database_settings(request.param, tmp_path) as s:
        yield s


def _history(feed_id: int, n: int) -> list[dict[str, Any]]:
    return [
        {
            "at": (NOW + timedelta(minutes=n)).isoformat(),
            "outcome": "error",
            "error_class": 'quoted "x" \\ back\\slash\ttab\nline',
            "reason": f"Россия → Azərbaycan «{feed_id}» 🛰 {{}}[],",
            "nested": {"list": [1, 2.5, None, True, "a,b"], "n": n},
        }
    ]


def _seed(settings: Settings) -> list[int]:
    with db.session_scope(settings) as session:
        session.add_all(
            Feed(
                config_url=f"http://127.0.0.1/f{i}",
                url=f"http://127.0.0.1/f{i}",
                name=f"f{i}",
                created_at=NOW,
                poll_history=_history(i, 0),
            )
            for i in range(FEEDS)
        )
    with Session(db.get_engine(settings)) as session:
        return [int(i) for i in session.exec(select(Feed.id).order_by(col(Feed.id))).all() if i is not None]


def _changes(ids: list[int], n: int) -> list[tuple[int, dict[str, Any]]]:
    """Round ``n``: a third of the rows a new history and a reason, a third the reason alone, a
    third an empty history alone."""
    changes: list[tuple[int, dict[str, Any]]] = []
    for k, i in enumerate(ids):
        reason = {"next_check_reason": f"round {n} → {i}", "next_check_at": NOW + timedelta(minutes=n)}
        if k % 3 == 0:
            changes.append((i, {**reason, "poll_history": _history(i, n)}))
        elif k % 3 == 1:
            changes.append((i, reason))
        else:
            changes.append((i, {"poll_history": []}))
    return changes


def _rows(settings: Settings) -> dict[int, tuple[list[dict[str, Any]], str]]:
    """Each feed's history and schedule reason, by id."""
    with Session(db.get_engine(settings)) as session:
        rows = session.exec(select(Feed.id, Feed.poll_history, Feed.next_check_reason)).all()
    return {int(i): (history, reason) for i, history, reason in rows if i is not None}


def test_each_row_gets_its_own_history_and_keeps_what_it_does_not_set(settings: Settings) -> None:
    ids = _seed(settings)
    before = _rows(settings)
    with db.session_scope(settings) as session:
        store.update_feeds(session, _changes(ids, 1))
    after = _rows(settings)
    for k, i in enumerate(ids):
        history, reason = after[i]
        if k % 3 == 0:
            assert (history, reason) == (_history(i, 1), f"round 1 → {i}"), i
        elif k % 3 == 1:
            assert (history, reason) == (before[i][0], f"round 1 → {i}"), i
        else:
            assert (history, reason) == ([], before[i][1]), i


def test_the_statement_stays_right_once_prepared(tmp_path: Path) -> None:
    """Eight rounds on one connection: psycopg prepares the statement at its sixth run, and
    PostgreSQL may then plan it generically (the histories' array a parameter, not a value)."""
    with database_settings("postgresql", tmp_path) as settings:
        ids = _seed(settings)
        with Session(db.get_engine(settings)) as session:
            for n in range(1, 9):
                store.update_feeds(session, _changes(ids, n)[: store.INSERT_CHUNK])
                session.commit()
                history = session.exec(select(Feed.poll_history).where(Feed.id == ids[0])).one()
                assert history == _history(ids[0], n)
            prepared = session.connection().exec_driver_sql(
                "SELECT count(*) FROM pg_prepared_statements"
                " WHERE statement LIKE 'UPDATE feed SET %%JSON[]%%'"
            )
            assert prepared.scalar_one() == 1
        assert _rows(settings)[ids[3]][0] == _history(ids[3], 8)
