"""Rounds: a tick takes an origin's feeds that fall due soon with its due ones, and sends an
origin's feeds in one batch (``store.claim_due_feeds`` with ``store.Rounds``, ``pipeline.tick``).

The claim on SQLite and PostgreSQL; the tick on SQLite. That a batch's requests to one host
share a kept connection is ``test_fetch_keepalive``'s.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, text, update
from sqlmodel import Session, col, select

from feedwatch import db, pipeline, store
from feedwatch.models import Feed, FeedState, origin_of
from feedwatch.settings import Settings
from feedwatch.sources import FeedSpec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
LEASE = 300
#: A feed goes early within a tenth of its interval, at most a minute; rounds of ten feeds.
ROUNDS = store.Rounds(share=0.1, most_early=timedelta(seconds=60), per_origin=10)


def add(session: Session, url: str, *, due_in: float = 0, polled_ago: float | None = 600, **row: Any) -> int:
    """A feed due ``due_in`` seconds after NOW, last polled ``polled_ago`` seconds before NOW."""
    feed = Feed(
        config_url=url,
        url=url,
        origin=origin_of(url),
        next_check_at=NOW + timedelta(seconds=due_in),
        last_polled_at=None if polled_ago is None else NOW - timedelta(seconds=polled_ago),
        **row,
    )
    session.add(feed)
    session.flush()
    assert feed.id is not None
    return feed.id


def test_an_origin_is_the_scheme_host_and_port_a_connection_is_kept_for() -> None:
    assert origin_of("https://News.AM/eng/rss/") == "https://news.am"
    assert origin_of("https://news.am:443/rus/rss/") == "https://news.am"
    assert origin_of("http://news.am/eng/rss/") == "http://news.am"
    assert origin_of("http://news.am:80/x") == "http://news.am"
    assert origin_of("http://127.0.0.1:8080/f/1.xml") == "http://127.0.0.1:8080"
    assert origin_of("https://[::1]:8443/feed") == "https://[::1]:8443"
    assert origin_of("HTTPS://user:pw@Example.org/feed") == "https://example.org"
    assert origin_of("https://example.org:99999/feed") is None  # a bad port
    assert origin_of("file:///etc/passwd") is None
    assert origin_of("not a url") is None


def test_a_tick_takes_the_feeds_of_a_due_feeds_origin_that_fall_due_soon(session: Session) -> None:
    a = "https://a.example"
    due = add(session, f"{a}/due")
    soon = add(session, f"{a}/soon", due_in=50)  # 50 s early, a tenth of its 650 s interval: in
    add(session, f"{a}/too-soon", due_in=50, polled_ago=400)  # 50 s early, over a tenth of 450 s
    add(session, f"{a}/past-the-cap", due_in=61, polled_ago=3600)  # a tenth allows 366 s; the cap 60
    add(session, f"{a}/failing", due_in=5, error_count=1)  # in backoff (or told when to come back)
    add(session, f"{a}/never-polled", due_in=5, polled_ago=None)
    add(session, f"{a}/outstanding", due_in=5, unreported_claims=1)
    add(session, f"{a}/disabled", due_in=5, enabled=False)
    add(session, f"{a}/state-disabled", due_in=5, state=FeedState.DISABLED)
    add(session, f"{a}:8443/other-port", due_in=5)
    add(session, "https://b.example/other-host", due_in=5)
    add(session, "http://a.example/other-scheme", due_in=5)
    store.mark_rounds(session)
    session.commit()

    claims = store.claim_due_feeds(session, NOW, 100, LEASE, ROUNDS)

    assert [(c.id, c.origin, c.early) for c in claims] == [(due, a, False), (soon, a, True)]
    leased = session.exec(
        select(Feed.next_check_at, Feed.unreported_claims).where(col(Feed.id) == soon)
    ).one()
    assert leased[0].replace(tzinfo=UTC) == NOW + timedelta(seconds=LEASE) and leased[1] == 1
    # Claimed: a second tick at the same time takes nothing.
    assert store.claim_due_feeds(session, NOW, 100, LEASE, ROUNDS) == []


def test_without_rounds_a_tick_takes_due_feeds_only(session: Session) -> None:
    due = add(session, "https://a.example/due")
    add(session, "https://a.example/soon", due_in=10)
    store.mark_rounds(session)
    session.commit()
    assert [c.id for c in store.claim_due_feeds(session, NOW, 100, LEASE)] == [due]


@pytest.mark.parametrize(
    ("a_soon_in", "b_soon_in"),
    [
        # Three of a's feeds falling due within the minute: with its due one, more than a round.
        pytest.param(range(10, 13), 10, id="three-soon"),
        # Ten of a's falling due before b's feed: the read takes each origin's soonest few (enough
        # to tell it busy), not the soonest few of all, so b's feed keeps its place (round 44).
        pytest.param(range(1, 11), 30, id="ten-soon-first"),
    ],
)
def test_a_busy_origin_s_feeds_never_go_early(session: Session, a_soon_in: range, b_soon_in: int) -> None:
    """An origin with more feeds falling due within the minute than a round holds (three here,
    its due ones and those that could not go early counted) is busy: its connections are in use
    anyway, and early polls would only add polls. Another origin's feeds still go early."""
    rounds = store.Rounds(share=0.1, most_early=timedelta(seconds=60), per_origin=3)
    a, b = "https://a.example", "https://b.example"
    a_due = add(session, f"{a}/due")
    for k, due_in in enumerate(a_soon_in):
        add(session, f"{a}/soon-{k}", due_in=due_in)
    b_due = add(session, f"{b}/due")
    b_soon = add(session, f"{b}/soon", due_in=b_soon_in)
    add(session, f"{b}/failing", due_in=20, error_count=2)
    store.mark_rounds(session)
    session.commit()

    claims = store.claim_due_feeds(session, NOW, 100, LEASE, rounds)

    assert [(c.id, c.early) for c in claims] == [(a_due, False), (b_due, False), (b_soon, True)]


def test_a_feed_claimed_between_the_read_and_the_claim_is_not_taken_twice(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read of the feeds that may go early locks nothing: the claim checks again that each
    is unclaimed, as a concurrent tick's claim (moved on, counted) would leave it."""
    due = add(session, "https://a.example/due")
    taken = add(session, "https://a.example/taken", due_in=10, unreported_claims=1)
    free = add(session, "https://a.example/free", due_in=10)
    store.mark_rounds(session)
    session.commit()
    monkeypatch.setattr(store, "_early_ids", lambda *_: [taken, free])
    assert [(c.id, c.early) for c in store.claim_due_feeds(session, NOW, 100, LEASE, ROUNDS)] == [
        (due, False),
        (free, True),
    ]


def test_early_feeds_fill_only_the_room_the_claims_limit_leaves(session: Session) -> None:
    due = [add(session, f"https://a.example/due-{k}") for k in range(2)]
    soon = [add(session, f"https://a.example/soon-{k}", due_in=10 + k) for k in range(5)]
    store.mark_rounds(session)
    session.commit()
    rounds = store.Rounds(share=0.1, most_early=timedelta(seconds=60), per_origin=100)
    assert [c.id for c in store.claim_due_feeds(session, NOW, 3, LEASE, rounds)] == [*due, soon[0]]


def test_rounds_are_for_enabled_feeds_sharing_an_origin_with_a_few_others(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``in_rounds``: an origin of 2 to ``ROUND_ORIGIN_MOST`` enabled feeds (3 here). One feed
    alone, a disabled feed (nor does it count), an origin with more (its connections are in use
    anyway, and its rows stay out of the rounds' index), a URL without an origin: not in rounds.
    Only the rows whose flag changes are written."""
    monkeypatch.setattr(store, "ROUND_ORIGIN_MOST", 3)
    pair = [add(session, f"https://pair.example/{k}") for k in range(2)]
    lone = add(session, "https://lone.example/1")
    lone_off = add(session, "https://lone.example/2", enabled=False)
    crowd = [add(session, f"https://crowd.example/{k}") for k in range(4)]
    nowhere = add(session, "not a url")
    assert store.mark_rounds(session) == 2
    flags = dict(session.execute(select(Feed.id, Feed.in_rounds)).all())
    assert [flags[i] for i in (*pair, lone, lone_off, *crowd, nowhere)] == [True, True] + [False] * 7
    assert store.mark_rounds(session) == 0
    session.execute(update(Feed).where(col(Feed.id) == crowd[0]).values(enabled=False))
    assert store.mark_rounds(session) == 3  # three left on crowd.example: in rounds now
    flags = dict(session.execute(select(Feed.id, Feed.in_rounds)).all())
    assert [flags[i] for i in crowd] == [False, True, True, True]


def test_a_feed_not_in_rounds_never_goes_early(session: Session) -> None:
    """Rounds read the flag the last sync left (here: none ran), not the origin alone."""
    due = add(session, "https://a.example/due")
    add(session, "https://a.example/soon", due_in=10)
    session.commit()
    assert [c.id for c in store.claim_due_feeds(session, NOW, 100, LEASE, ROUNDS)] == [due]


def test_the_settings_rounds_hold_five_seconds_of_an_origin_s_paced_requests(tmp_path: Path) -> None:
    base = {"database_url": f"sqlite:///{tmp_path}/x.db"}
    rounds = pipeline.rounds(Settings(**base))
    assert rounds == store.Rounds(0.1, timedelta(seconds=60), 11)  # 0.5 s apart: 11 in 5 s
    unpaced = pipeline.rounds(Settings(**base, per_host_min_gap_seconds=0, per_host_concurrency=6))
    assert unpaced is not None and unpaced.per_origin == 6  # a round: what the host's slots take at once
    assert pipeline.rounds(Settings(**base, poll_round_share=0)) is None
    assert pipeline.rounds(Settings(**base, poll_round_seconds=0)) is None
    with pytest.raises(ValueError, match="poll_round_share"):
        Settings(**base, poll_round_share=1)


def test_the_tick_sends_an_origin_s_feeds_in_one_batch(pipeline_settings: Settings) -> None:
    """Feeds of two origins, their ids interleaved, due together: a batch an origin; and the
    one that falls due soon goes with its origin's."""
    settings = pipeline_settings.model_copy(update={"poll_batch_size": 3, "poll_min_batches": 1})
    published: list[list[int]] = []
    ctx = pipeline.Context(settings, clock=lambda: NOW, rng=random.Random(7), publish_poll=published.append)
    urls = [f"https://{'ab'[k % 2]}.example/{k}" for k in range(5)] + ["https://b.example/soon"]
    with db.session_scope(settings) as session:
        store.sync_feeds(session, [FeedSpec(url=u) for u in urls], NOW)
        ids = {url: feed_id for url, feed_id in session.execute(select(Feed.url, Feed.id)).all()}
        session.execute(
            update(Feed)
            .where(col(Feed.url) == urls[-1])
            .values(next_check_at=NOW + timedelta(seconds=30), last_polled_at=NOW - timedelta(minutes=10))
        )
    report = pipeline.tick(ctx)
    assert report.claimed == 6 and report.batches == 2
    assert published == [
        [ids[urls[0]], ids[urls[2]], ids[urls[4]]],
        [ids[urls[1]], ids[urls[3]], ids[urls[5]]],
    ]
    with db.session_scope(settings) as session:
        beat = store.heartbeat_detail(session, "beat")
    assert beat is not None and beat["early"] == 1


def test_the_tick_sends_no_more_of_an_origin_s_feeds_a_batch_than_its_pacing_starts_in_time(
    pipeline_settings: Settings,
) -> None:
    """A busy origin's due feeds go together, but a batch takes only as many of them as the
    host's pacing lets start within half the task's soft time limit (here 1 + 10 × 0.5 / 0.5 =
    11); the next batch takes the rest, and the other origin's feeds fill it."""
    settings = pipeline_settings.model_copy(
        update={
            "poll_batch_size": 100,
            "poll_min_batches": 1,
            "per_host_min_gap_seconds": 0.5,
            "task_soft_time_limit": 10,
        }
    )
    assert pipeline.origin_most(settings) == 11
    published: list[list[int]] = []
    ctx = pipeline.Context(settings, clock=lambda: NOW, rng=random.Random(7), publish_poll=published.append)
    urls = [f"https://busy.example/{k}" for k in range(30)] + [f"https://other.example/{k}" for k in range(5)]
    with db.session_scope(settings) as session:
        store.sync_feeds(session, [FeedSpec(url=u) for u in urls], NOW)
        ids = {url: feed_id for url, feed_id in session.execute(select(Feed.url, Feed.id)).all()}
    report = pipeline.tick(ctx)
    assert report.claimed == 35 and report.batches == 3
    busy = sorted(ids[u] for u in urls[:30])
    assert published == [busy[:11], busy[11:22], busy[22:] + sorted(ids[u] for u in urls[30:])]


def test_the_read_of_an_origin_s_soon_feeds_goes_through_the_rounds_index(session: Session) -> None:
    """Among many feeds not in rounds (the partial index holds none of them) and a few in rounds,
    the read of what may go early is an index scan of ``ix_feed_rounds``, not of every feed due
    within the minute."""
    from sqlalchemy.dialects import postgresql, sqlite

    rows = [
        {
            "config_url": f"https://big.example/{k}",
            "url": f"https://big.example/{k}",
            "origin": "https://big.example",
        }
        for k in range(2000)
    ] + [
        {
            "config_url": f"https://a.example/{k}",
            "url": f"https://a.example/{k}",
            "origin": "https://a.example",
        }
        for k in range(5)
    ]
    for k, row in enumerate(rows):
        row.update(
            next_check_at=NOW + timedelta(seconds=k % 60), tags=[], redirect_history=[], poll_history=[]
        )
    session.execute(insert(Feed), rows)
    store.mark_rounds(session)  # big.example: over ROUND_ORIGIN_MOST, out of rounds
    session.commit()
    kind = session.connection().dialect.name
    session.execute(text("ANALYZE"))
    statement = store._soon(["https://a.example", "https://big.example"], NOW, ROUNDS)
    dialect = postgresql.dialect() if kind == "postgresql" else sqlite.dialect()
    sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    explain = "EXPLAIN " if kind == "postgresql" else "EXPLAIN QUERY PLAN "
    plan = "\n".join(str(row[-1]) for row in session.execute(text(explain + sql)))
    assert "ix_feed_rounds" in plan, plan
