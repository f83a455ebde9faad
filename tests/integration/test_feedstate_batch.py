"""A poll batch's feed-state writes (``feedstate.batch``: one Core SELECT, Core UPDATEs of the
changed columns) leave every row exactly as the per-feed path through the ORM ``Feed`` does, on
SQLite and PostgreSQL, for every kind of outcome: 304, unchanged, parsed (hub, dates, hints),
redirects towards adoption, failures (``gone``, Retry-After), recovery, WebSub fallback."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.engine import Connection
from sqlmodel import Session
from support.settings import database_settings

from feedwatch import db, feedstate, store
from feedwatch.fetch import FetchRequest, FetchResult
from feedwatch.fetch.values import Redirect
from feedwatch.models import Feed
from feedwatch.parse import ParsedEntry, ParsedFeed
from feedwatch.pipeline import PollReport
from feedwatch.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

T: Any = Feed.__table__
START = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    with database_settings(request.param, tmp_path) as s:
        yield s


def _history(r: random.Random) -> list[dict[str, Any]]:
    entries = []
    for k in range(r.choice([0, 1, 5, 19, 20, 24])):
        entry: dict[str, Any] = {
            "at": (START - timedelta(minutes=10 * (30 - k))).isoformat(timespec="seconds"),
            "outcome": r.choice(["ok", "not_modified", "unchanged", "error"]),
            "status": r.choice([200, 304, 500]),
            "entries": r.randint(0, 50),
            "new": r.randint(0, 3),
            "interval": r.choice([None, 3.5, 10.0]),
        }
        if r.random() < 0.5:
            entry["newest"] = (START - timedelta(hours=r.randint(1, 100))).isoformat(timespec="seconds")
        if r.random() < 0.5:
            entry["rate"] = r.choice([None, 0.5, 12.0])
        entries.append(entry)
    return entries


def _feed(r: random.Random, i: int) -> Feed:
    return Feed(
        config_url=f"http://c/{i}",
        url=r.choice([f"http://f/{i}", "http://same/x"]),
        tags=r.choice([[], ["priority"]]),
        interval_minutes=r.choice([5.0, 60.0]),
        min_interval_minutes=r.choice([None, 2.0]),
        state=r.choice(["new", "ok", "not_modified", "backing_off"]),
        next_check_at=START,
        claimed_at=r.choice([None, START - timedelta(seconds=5)]),
        unreported_claims=r.choice([0, 1]),
        etag=r.choice([None, '"e1"']),
        last_modified=r.choice([None, "Mon, 01 Jan 2024 00:00:00 GMT"]),
        body_hash=r.choice([None, "h1"]),
        last_status=r.choice([None, 304]),
        last_duration_ms=r.choice([None, 3]),
        error_class=r.choice([None, "timeout"]),
        error_count=r.choice([0, 0, 1, 6]),
        redirect_candidate=r.choice([None, "http://new/x"]),
        redirect_count=r.choice([0, 2]),
        redirect_history=r.choice([[], [{"at": "x", "chain": [[301, "a", "b"]]}] * 10]),
        poll_history=_history(r),
        conditional_polls=r.choice([0, 19]),
        last_unconditional_at=r.choice([None, START - timedelta(hours=30)]),
        websub_state=r.choice([None, "subscribed"]),
        websub_lease_until=r.choice([None, START + timedelta(days=1)]),
        created_at=START - timedelta(days=3),
        updated_at=START - timedelta(minutes=10),
    )


Outcome = tuple[str, FetchResult, PollReport, ParsedFeed | None, str | None, tuple[str, str, float | None]]


def _outcome(r: random.Random, url: str, now: datetime) -> Outcome:
    kind = r.choice(["304", "unchanged", "parsed", "failed"])
    request = FetchRequest(url=url, etag=r.choice([None, '"e1"']), last_modified=r.choice([None, "Mon"]))
    chain = r.choice(
        [
            (),
            (Redirect(301, url, "http://new/x"),),
            (Redirect(301, url, "http://a"), Redirect(302, "http://a", "http://new/x")),
        ]
    )
    result = FetchResult(
        request,
        chain[-1].target if chain else url,
        304 if kind == "304" else 200,
        kind == "304",
        b"" if kind == "304" else b"x",
        r.choice([{}, {"cache-control": "max-age=3600"}]),
        r.choice([None, '"e2"']),
        None,
        chain,
    )
    report = PollReport(1, url, kind, http_status=result.status, entries=r.randint(0, 9), new=r.randint(0, 3))
    parsed = None
    if kind == "parsed":
        dates = [now - timedelta(hours=r.randint(0, 200)) for _ in range(r.randint(0, 4))]
        entries = tuple(ParsedEntry(f"g{d}", None, "t", "", "", None, d, None, None, None) for d in dates)
        hub = r.choice([None, "http://hub"])
        parsed = ParsedFeed(
            "t", None, None, entries, False, None, r.choice([None, 60]), None, None, hub, None, "rss20"
        )
    body_hash = None if kind in ("304", "failed") else r.choice(["h1", "h2"])
    failure = (r.choice(["timeout", "gone", "http_429"]), "m" * r.choice([5, 700]), r.choice([None, 9999.0]))
    return kind, result, report, parsed, body_hash, failure


def _record(session: Any, feed_id: int, outcome: Outcome, now: datetime, seed: int) -> None:
    kind, result, report, parsed, body_hash, (error_class, message, retry_after) = outcome
    rng = random.Random(seed)
    if kind == "failed":
        report.outcome, report.error_class = "error", error_class
        feedstate.record_failure(session, feed_id, error_class, message, retry_after, report, now, rng)
    else:
        feedstate.record_success(session, feed_id, result, body_hash, report, now, rng, parsed)


def _row(settings: Settings, feed_id: int) -> dict[str, Any]:
    with db.session_scope(settings) as session:
        return dict(session.connection().execute(select(T).where(T.c.id == feed_id)).mappings().one())


def _restore(settings: Settings, row: dict[str, Any]) -> None:
    with db.session_scope(settings) as session:
        values = {k: v for k, v in row.items() if k != "id"}
        session.connection().execute(update(T).where(T.c.id == row["id"]).values(values))


def test_batch_writes_exactly_what_the_orm_path_writes(settings: Settings) -> None:
    r = random.Random(3)
    with db.session_scope(settings) as session:
        feeds = [_feed(r, i) for i in range(60)]
        session.add_all(feeds)
        session.flush()
        ids = [f.id for f in feeds if f.id is not None]
    for n, feed_id in enumerate(ids):
        before = _row(settings, feed_id)
        now = START + timedelta(minutes=r.randint(0, 3000))
        outcome, seed = _outcome(r, before["url"], now), r.randint(0, 10**6)
        with db.session_scope(settings) as session:
            _record(session, feed_id, outcome, now, seed)  # no batch: the session's Feed object
        by_orm = _row(settings, feed_id)
        _restore(settings, before)
        neighbour = ids[(n + 1) % len(ids)]  # in the batch, left alone
        with (
            db.session_scope(settings) as session,
            _batch(session, [feed_id, neighbour]),
        ):
            _record(session, feed_id, outcome, now, seed)
        assert _row(settings, feed_id) == by_orm != before, outcome[0]
        assert _row(settings, neighbour)["updated_at"] != now


def _batch(session: Session, ids: Iterable[int]) -> AbstractContextManager[None]:
    """``feedstate.batch`` over these feeds' rows as they are now (a poll batch reads them
    before its fetch)."""
    return feedstate.batch(session, {row.id: row for _, row in feedstate.load(session, ids)})


@contextmanager
def _updates(settings: Settings) -> Iterator[list[tuple[str, Any]]]:
    """Every UPDATE statement sent while iterating, with its parameters."""
    seen: list[tuple[str, Any]] = []

    def spy(_conn: Connection, _cursor: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            seen.append((statement, params))

    engine = db.get_engine(settings)
    event.listen(engine, "before_cursor_execute", spy)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", spy)


def _written(statement: str, params: Any) -> list[tuple[int, set[str]]]:
    """(feed id, columns set) for each row an UPDATE statement writes, in its order."""
    if isinstance(params, dict):  # PostgreSQL: the rows are its one JSON parameter (store.update_feeds)
        rows = getattr(params["rows"], "obj", params["rows"])
        bits = store._feed_update()[1]
        return [(row["id"], {name for name, bit in bits.items() if row["mask"] & bit}) for row in rows]
    columns = set(re.findall(r"(\w+)=\?", statement.split(" WHERE ")[0]))  # SQLite: an executemany
    return [(p[-1], columns) for p in params]


def test_batch_writes_changed_columns_only_in_id_order_and_nothing_on_error(settings: Settings) -> None:
    with db.session_scope(settings) as session:
        feeds = [Feed(config_url=f"http://c/{i}", url=f"http://f/{i}", created_at=START) for i in range(4)]
        session.add_all(feeds)
        session.flush()
        ids = sorted(f.id for f in feeds if f.id is not None)
    result = FetchResult(FetchRequest(url="http://f"), "http://f", 304, True, b"")
    with db.session_scope(settings) as session:  # the poll batch reads its rows before the fetch
        rows = {row.id: row for _, row in feedstate.load(session, reversed(ids))}
    with db.session_scope(settings) as session:  # another writer, between the poll's read and write
        session.connection().execute(update(T).where(T.c.id == ids[0]).values(websub_state="requested"))
    with _updates(settings) as seen:
        with db.session_scope(settings) as session, feedstate.batch(session, rows):
            for feed_id in reversed(ids):
                report = PollReport(feed_id, "http://f", "not_modified", http_status=304)
                feedstate.record_success(session, feed_id, result, None, report, START, random.Random(1))
        assert len(seen) == 1  # one statement: on SQLite every row changed the same columns
        written = _written(*seen[0])
        assert [feed_id for feed_id, _ in written] == ids
        for _, columns in written:
            assert "next_check_at" in columns and "state" in columns
            assert not any(name.startswith(("websub", "redirect")) for name in columns)
        seen.clear()
        report = PollReport(ids[0], "http://f", "not_modified", http_status=304)
        with (
            pytest.raises(RuntimeError),
            db.session_scope(settings) as session,
            _batch(session, ids),
        ):
            feedstate.record_success(session, ids[0], result, None, report, START, random.Random(1))
            raise RuntimeError("the batch fails: nothing is written")
        assert seen == []
    assert _row(settings, ids[0])["websub_state"] == "requested"
    assert _row(settings, ids[1])["state"] == "not_modified"


def test_a_failure_message_with_a_nul_is_stored_without_it(settings: Settings) -> None:
    with db.session_scope(settings) as session:
        feed = Feed(config_url="http://c/nul", url="http://f/nul", created_at=START)
        session.add(feed)
        session.flush()
        assert feed.id is not None
        feed_id = feed.id
    report = PollReport(feed_id, "http://f/nul", "error", error_class="parse_error")
    message = 'unreadable document: declared as "utf\x00-8"'
    with db.session_scope(settings) as session, _batch(session, [feed_id]):
        feedstate.record_failure(
            session, feed_id, "parse_error", message, None, report, START, random.Random(1)
        )
    assert _row(settings, feed_id)["error_message"] == 'unreadable document: declared as "utf-8"'


def test_quiet_polls_alike_are_stored_as_one_run_in_the_feeds_history(settings: Settings) -> None:
    """Through ``record_success`` as a poll batch calls it: three alike 304s become one entry
    (``feedstate.fold_last``), a failure starts another, the next 304 another again."""
    with db.session_scope(settings) as session:
        feed = Feed(config_url="http://c/q", url="http://f/q", interval_minutes=60.0, created_at=START)
        session.add(feed)
        session.flush()
        feed_id = feed.id
    assert feed_id is not None
    result = FetchResult(FetchRequest(url="http://f/q"), "http://f/q", 304, True, b"")
    times = [START + timedelta(hours=h) for h in range(5)]
    for k, now in enumerate(times):
        report, rng = PollReport(feed_id, "http://f/q", "not_modified", http_status=304), random.Random(1)
        with db.session_scope(settings) as session, _batch(session, [feed_id]):
            if k == 3:
                report.outcome, report.error_class = "error", "timeout"
                feedstate.record_failure(session, feed_id, "timeout", "m", None, report, now, rng)
            else:
                feedstate.record_success(session, feed_id, result, None, report, now, rng)
    history = _row(settings, feed_id)["poll_history"]
    iso = [t.isoformat(timespec="seconds") for t in times]
    assert [(h["at"], h.get("since"), h.get("n"), h["outcome"]) for h in history] == [
        (iso[2], iso[0], 3, "not_modified"),
        (iso[3], None, None, "error"),
        (iso[4], None, None, "not_modified"),
    ]
