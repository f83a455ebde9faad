"""The tick's claim by marks (``store.claim_due_feeds``, ``models.ClaimMark``; round 45): a claim
writes one mark where it stopped and nothing to the feeds it sends; a report moves a feed past
the mark; a feed still at or before the mark of a lease ago is claimed again, counted.

On SQLite and PostgreSQL; two ticks at once on PostgreSQL (SQLite serializes writers).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, update
from sqlmodel import Session, col, select
from support.settings import database_settings

from feedwatch import db, pipeline, status, store
from feedwatch.models import ClaimMark, Feed, FeedState
from feedwatch.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
LEASE = 300


def add(session: Session, n: int, *, due_in: float = 0, **row: Any) -> list[int]:
    """``n`` feeds due ``due_in`` seconds after NOW (the same time: ties broken by id)."""
    feeds = [
        Feed(
            config_url=f"https://f.example/{k}-{row.get('name', '')}",
            url=f"https://f.example/{k}",
            next_check_at=NOW + timedelta(seconds=due_in),
            **row,
        )
        for k in range(n)
    ]
    session.add_all(feeds)
    session.flush()
    return [int(f.id) for f in feeds if f.id is not None]


def rows(session: Session) -> dict[int, tuple[Any, ...]]:
    got = session.exec(
        select(Feed.id, Feed.next_check_at, Feed.claimed_at, Feed.unreported_claims, Feed.updated_at)
    ).all()
    return {int(r[0]): tuple(r[1:]) for r in got if r[0] is not None}


def claim(session: Session, at: datetime, limit: int = 100) -> list[int]:
    return [c.id for c in store.claim_due_feeds(session, at, limit, LEASE)]


def report(session: Session, ids: list[int], at: datetime) -> None:
    """What a poll's report does to the schedule: the feed due an hour later."""
    session.execute(
        update(Feed)
        .where(col(Feed.id).in_(ids))
        .values(next_check_at=at + timedelta(hours=1), claimed_at=None)
    )


def test_a_claim_writes_a_mark_and_nothing_to_the_feeds_it_sends(session: Session) -> None:
    ids = add(session, 5)
    before = rows(session)
    assert claim(session, NOW) == ids
    assert rows(session) == before  # no row version a claimed feed
    marks = session.exec(select(ClaimMark.next_check_at, ClaimMark.feed_id)).all()
    assert [(m[0], m[1]) for m in marks] == [(NOW, ids[-1])]
    # A second tick (a second beat, a redelivered tick) sends none of them again.
    assert claim(session, NOW + timedelta(seconds=1)) == []
    assert claim(session, NOW + timedelta(seconds=LEASE - 1)) == []


def test_ties_on_the_due_time_split_by_id_across_ticks_none_skipped_none_twice(session: Session) -> None:
    ids = add(session, 7)  # all due at NOW
    taken = [claim(session, NOW, limit=3), claim(session, NOW, limit=3), claim(session, NOW, limit=3)]
    assert taken == [ids[:3], ids[3:6], ids[6:]]


def test_a_report_moves_a_feed_past_the_mark_and_it_is_claimed_when_due_again(session: Session) -> None:
    ids = add(session, 3)
    assert claim(session, NOW) == ids
    report(session, ids[:2], NOW + timedelta(seconds=2))
    assert claim(session, NOW + timedelta(seconds=LEASE - 10)) == []
    # Due again, the first two are sent; the third never reported: after its lease it is sent
    # again too, one poll counted as lost.
    again = store.claim_due_feeds(session, NOW + timedelta(minutes=61), 100, LEASE)
    assert [(c.id, c.unreported) for c in again] == [(ids[0], 0), (ids[1], 0), (ids[2], 1)]


def test_a_feed_whose_polls_keep_dying_is_counted_each_lease(session: Session) -> None:
    (feed,) = add(session, 1)
    at = NOW
    assert claim(session, at) == [feed]
    for lost in (1, 2, 3):
        at += timedelta(seconds=LEASE + 1)
        got = store.claim_due_feeds(session, at, 100, LEASE)
        assert [(c.id, c.unreported) for c in got] == [(feed, lost)]
    # Each lease counts once: a tick within the next lease takes nothing.
    assert claim(session, at + timedelta(seconds=LEASE // 2)) == []
    # A report clears the count (feedstate writes 0), and the next claim sees none.
    due = at + timedelta(seconds=1)  # a report's next check is after the tick that sent the poll
    session.execute(update(Feed).where(col(Feed.id) == feed).values(unreported_claims=0, next_check_at=due))
    assert [(c.id, c.unreported) for c in store.claim_due_feeds(session, due, 100, LEASE)] == [(feed, 0)]


def test_disabled_feeds_are_not_claimed_nor_counted(session: Session) -> None:
    on = add(session, 1, name="on")
    add(session, 1, name="off", enabled=False)
    add(session, 1, name="gone", state=FeedState.DISABLED)
    assert claim(session, NOW) == on
    assert claim(session, NOW + timedelta(seconds=LEASE + 1)) == on  # lost, taken again
    assert {r[2] for i, r in rows(session).items() if i not in on} == {0}


def test_marks_older_than_the_lease_are_dropped_but_the_one_recovery_needs(session: Session) -> None:
    ids = add(session, 10)
    for k in range(10):  # one feed a tick, ticks a minute apart
        report(session, ids[:k], NOW + timedelta(minutes=k))
        claim(session, NOW + timedelta(minutes=k), limit=1)
    marks = session.exec(select(ClaimMark.at).order_by(col(ClaimMark.id))).all()
    newest = NOW + timedelta(minutes=9)
    # Every mark of the last lease, and the newest one a lease old (the lost mark), no older.
    assert marks[0] <= newest - timedelta(seconds=LEASE) < marks[1]
    assert marks[-1] == newest


def test_a_clock_gone_back_still_takes_a_lost_feed_again(session: Session) -> None:
    """Marks written before the clock went back: the newest one's due time is ahead of ``now``.
    A lost feed goes just after that mark (not to ``now``, at or before it, where it would pass
    for sent), and is claimed once the clock passes it."""
    (lost,) = add(session, 1, due_in=-500)
    session.add(
        ClaimMark(at=NOW - timedelta(seconds=400), next_check_at=NOW - timedelta(seconds=500), feed_id=lost)
    )
    session.add(
        ClaimMark(at=NOW - timedelta(seconds=1), next_check_at=NOW + timedelta(seconds=100), feed_id=0)
    )
    session.flush()
    assert claim(session, NOW) == []
    again = store.claim_due_feeds(session, NOW + timedelta(seconds=101), 100, LEASE)
    assert [(c.id, c.unreported) for c in again] == [(lost, 1)]


def test_released_feeds_are_claimed_again_on_the_next_tick(session: Session) -> None:
    ids = add(session, 3)
    assert claim(session, NOW) == ids
    store.release_claims(session, ids[1:], NOW)
    assert claim(session, NOW + timedelta(seconds=1)) == ids[1:]


def test_status_counts_a_sent_feed_as_polling_and_a_lost_one_as_overdue(tmp_path: Path) -> None:
    with database_settings("sqlite", tmp_path) as settings:
        with db.session_scope(settings) as session:
            ids = add(session, 2)
            assert claim(session, NOW) == ids
            report(session, ids[:1], NOW - timedelta(minutes=59, seconds=59))  # reported: due at NOW + 1 s
        with db.session_scope(settings) as session:
            soon = status.feed_status(session, NOW + timedelta(seconds=60), settings)
            late = status.feed_status(session, NOW + timedelta(seconds=LEASE + 60), settings)
        assert (soon["overdue"], late["overdue"]) == (1, 2)


@pytest.mark.parametrize("kind", ["postgresql"])
def test_two_ticks_at_once_take_disjoint_feeds(kind: str, tmp_path: Path) -> None:
    """The second tick waits for the first one's marks (a table lock), then starts after them."""
    with database_settings(kind, tmp_path) as settings:
        with db.session_scope(settings) as session:
            ids = add(session, 10)
        first = db.session_scope(settings)
        session_a = first.__enter__()
        taken_a = claim(session_a, NOW, limit=6)
        taken_b: list[int] = []
        thread = threading.Thread(target=lambda: taken_b.extend(_claim_in(settings, NOW, 100)))
        thread.start()
        thread.join(1.0)
        assert thread.is_alive()  # waiting for the first tick's lock
        first.__exit__(None, None, None)
        thread.join(10)
        assert (taken_a, taken_b) == (ids[:6], ids[6:])
        with db.session_scope(settings) as session:
            assert session.exec(select(func.count()).select_from(ClaimMark)).one() == 2


def _claim_in(settings: Settings, at: datetime, limit: int) -> list[int]:
    with db.session_scope(settings) as session:
        return claim(session, at, limit)


def test_the_tick_fails_a_feed_whose_polls_keep_dying(tmp_path: Path) -> None:
    with database_settings("sqlite", tmp_path) as settings:
        settings = settings.model_copy(update={"claim_lease_seconds": LEASE})
        with db.session_scope(settings) as session:
            (feed,) = add(session, 1)
        sent: list[list[int]] = []
        at = [NOW]
        ctx = pipeline.Context(settings=settings, clock=lambda: at[0], publish_poll=sent.append)
        for _ in range(pipeline.CRASH_LIMIT + 1):
            pipeline.tick(ctx)
            at[0] += timedelta(seconds=LEASE + 1)
        with db.session_scope(settings) as session:
            crashed = session.get(Feed, feed)
        assert sent == [[feed]] * pipeline.CRASH_LIMIT
        assert crashed is not None and crashed.error_class == "crash"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@pytest.mark.parametrize("writer", ["orm", "core"])
def test_a_next_check_committed_behind_the_mark_goes_just_after_it(
    kind: str, writer: str, tmp_path: Path
) -> None:
    """A report computes its feed's next check from when its poll started and commits later: a
    tick may have moved its mark past that time meanwhile. At the commit the row goes just after
    the mark, so the next tick sends it, not a tick a lease later."""
    with database_settings(kind, tmp_path) as settings:
        with db.session_scope(settings) as session:
            ids = add(session, 3)
        with db.session_scope(settings) as session:
            assert claim(session, NOW + timedelta(seconds=5)) == ids  # the mark: (NOW, ids[2])
        behind = NOW - timedelta(seconds=1)
        with db.session_scope(settings) as session:
            if writer == "orm":  # as a feed's own transaction writes it (feedstate outside a batch)
                feed = session.get(Feed, ids[0])
                assert feed is not None
                feed.next_check_at = behind
            else:  # as a poll batch writes its rows (store.update_feeds)
                store.update_feeds(session, [(ids[0], {"next_check_at": behind})])
        with db.session_scope(settings) as session:
            moved = session.get(Feed, ids[0])
            assert moved is not None and moved.next_check_at == NOW + timedelta(microseconds=1)
            assert claim(session, NOW + timedelta(seconds=6)) == ids[:1]


def test_a_report_waits_for_a_tick_in_progress_then_goes_after_its_mark(tmp_path: Path) -> None:
    """On PostgreSQL a report's commit takes the marks' lock in SHARE mode: it waits for the tick
    that holds it, then sees the mark that tick wrote."""
    with database_settings("postgresql", tmp_path) as settings:
        with db.session_scope(settings) as session:
            ids = add(session, 2)
        tick = db.session_scope(settings)
        session_a = tick.__enter__()
        assert claim(session_a, NOW) == ids  # not committed: the lock is held
        done = threading.Event()

        def report() -> None:
            with db.session_scope(settings) as session:
                store.update_feeds(session, [(ids[0], {"next_check_at": NOW - timedelta(seconds=1)})])
            done.set()

        thread = threading.Thread(target=report)
        thread.start()
        assert not done.wait(1.0)  # waiting for the tick's lock
        tick.__exit__(None, None, None)
        thread.join(10)
        assert done.is_set()
        with db.session_scope(settings) as session:
            assert claim(session, NOW + timedelta(seconds=1)) == ids[:1]
