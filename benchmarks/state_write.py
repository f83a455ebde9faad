"""PostgreSQL's CPU per poll for the feed-state write, by table design: the question whether the
schedule columns should leave the wide ``feed`` row (docs/performance-history.md, round 7).

    .venv/bin/python benchmarks/state_write.py [--feeds 10000] [--polls 20000] [--rounds 3]

Each design gets its own scratch database with ``--feeds`` feed rows shaped as the service
leaves them (a 20-entry ``poll_history``, validators, 400 bytes of entry fingerprints; lz4 for
the history where the server has it, as migration 0005 sets). A poll is what a 304 costs the
database in the service: the claim (one ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP
LOCKED)`` per batch), the batch's read of its rows, one ``UPDATE`` per row of the columns a 304
changes, and the commits. The designs:

- ``wide``: the service as it is: ``next_check_at``, ``claimed_at``, ``unreported_claims`` on
  the feed row, ``next_check_at`` indexed, so no update of the row is in place (HOT);
- ``split``: those three columns in a narrow ``feed_schedule`` table; the feed row loses its
  changing indexed column and is given ``fillfactor`` 90, so its updates can be HOT;
- ``wide_no_history``: ``wide`` without rewriting ``poll_history``: what the history costs.

Rounds alternate the designs (wide, split, wide_no_history, wide, …). Prints one JSON object:
PostgreSQL CPU per poll (its backend's /proc counters: 10 ms ticks, hence thousands of polls),
the client's CPU per poll, the share of HOT updates, and each design's ratio to ``wide``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import postgres_database, proc_cpu  # also puts this checkout's src/ first on sys.path

DESIGNS = ("wide", "split", "wide_no_history")
BATCH = 100
START = datetime(2026, 11, 30, tzinfo=UTC)
_HISTORY_ENTRY = {"outcome": "not_modified", "status": 304, "entries": 0, "new": 0}


def _entry(at: datetime) -> dict[str, Any]:
    return {"at": at.isoformat(timespec="seconds"), **_HISTORY_ENTRY, "rate": 12.5, "interval": 10.0}


def backend_cpu(conn: Any) -> float:
    """CPU seconds so far of this connection's server process."""
    return proc_cpu(conn.execute("SELECT pg_backend_pid()").fetchone()[0])


def create(url: str, design: str, feeds: int) -> Any:
    """The feed table (the service's model) with ``feeds`` rows; the design's changes on top."""
    import psycopg
    from sqlmodel import SQLModel, create_engine

    from feedwatch import store
    from feedwatch.db import json_dumps
    from feedwatch.models import Feed

    engine = create_engine(url)
    SQLModel.metadata.create_all(engine, tables=[store._table(Feed)])
    engine.dispose()
    conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        conn.execute("ALTER TABLE feed ALTER COLUMN poll_history SET COMPRESSION lz4")
        conn.commit()
    except psycopg.Error:
        conn.rollback()  # a server built without lz4: pglz, as migration 0005 leaves it
    history = json_dumps([_entry(START - timedelta(minutes=10 * k)) for k in range(20, 0, -1)])
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO feed (config_url, url, name, tags, interval_minutes, full_text, enabled, state,"
            " next_check_at, next_check_reason, unreported_claims, etag, last_entries, last_new,"
            " error_count, total_errors, redirect_count, redirect_history, poll_history,"
            " conditional_polls, created_at, updated_at, body_hash, last_status, last_polled_at,"
            " last_ok_at, entry_fingerprints) VALUES (%s, %s, %s, '[]', 10, false, true, 'ok', %s,"
            " 'x', 0, %s, 50, 0, 0, 0, 0, '[]', %s, 5, %s, %s, %s, 304, %s, %s, %s)",
            [
                (f"http://127.0.0.1:1/poll/{i}.xml",) * 2
                + (f"poll {i}", START + timedelta(milliseconds=i), f'"farm-poll-{i}"', history)
                + (START, START, "a" * 64, START, START, os.urandom(400))
                for i in range(feeds)
            ],
        )
    if design == "split":
        conn.execute(
            "CREATE TABLE feed_schedule (feed_id int PRIMARY KEY REFERENCES feed (id),"
            " next_check_at timestamptz NOT NULL, claimed_at timestamptz,"
            " unreported_claims int NOT NULL DEFAULT 0)"
        )
        conn.execute("CREATE INDEX ix_feed_schedule_next ON feed_schedule (next_check_at)")
        conn.execute("INSERT INTO feed_schedule SELECT id, next_check_at, claimed_at, 0 FROM feed")
        conn.execute("DROP INDEX ix_feed_next_check_at")
        conn.execute("ALTER TABLE feed SET (fillfactor = 90)")
    conn.commit()
    conn.autocommit = True
    if design == "split":
        conn.execute("VACUUM FULL feed")  # rewritten: the fillfactor holds for every page
    conn.execute("VACUUM ANALYZE")
    conn.autocommit = False
    return conn


_CLAIM = {
    "wide": "UPDATE feed SET claimed_at = %(now)s, next_check_at = %(lease)s,"
    " unreported_claims = unreported_claims + 1 WHERE id IN (SELECT id FROM feed"
    " WHERE enabled AND state <> 'disabled' AND next_check_at <= %(due)s"
    " ORDER BY next_check_at LIMIT %(n)s FOR UPDATE SKIP LOCKED) RETURNING id, unreported_claims",
    "split": "UPDATE feed_schedule SET claimed_at = %(now)s, next_check_at = %(lease)s,"
    " unreported_claims = unreported_claims + 1 WHERE feed_id IN (SELECT s.feed_id"
    " FROM feed_schedule s JOIN feed f ON f.id = s.feed_id WHERE f.enabled AND f.state <> 'disabled'"
    " AND s.next_check_at <= %(due)s ORDER BY s.next_check_at LIMIT %(n)s FOR UPDATE OF s SKIP LOCKED)"
    " RETURNING feed_id, unreported_claims",
}
_STATE = (
    "last_polled_at = %s, last_ok_at = %s, last_duration_ms = %s, conditional_polls = %s, updated_at = %s"
)
_WRITES = {
    "wide": [
        f"UPDATE feed SET {_STATE}, poll_history = %s, next_check_at = %s, claimed_at = NULL,"
        " unreported_claims = 0 WHERE id = %s"
    ],
    "split": [
        f"UPDATE feed SET {_STATE}, poll_history = %s WHERE id = %s",
        "UPDATE feed_schedule SET next_check_at = %s, claimed_at = NULL, unreported_claims = 0"
        " WHERE feed_id = %s",
    ],
    "wide_no_history": [
        f"UPDATE feed SET {_STATE}, next_check_at = %s, claimed_at = NULL, unreported_claims = 0"
        " WHERE id = %s"
    ],
}


class Clock:
    def __init__(self) -> None:
        self.now = START + timedelta(minutes=1)

    def tick(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def poll_batches(conn: Any, design: str, polls: int, clock: Clock, rng: random.Random) -> Iterator[int]:
    """Claim, read and write ``polls`` feeds as 304s, a batch at a time; yields batch sizes."""
    claim = _CLAIM["split" if design == "split" else "wide"]
    done = 0
    while done < polls:
        now = clock.tick()
        claim_params = {
            "now": now,
            "lease": now + timedelta(minutes=5),
            "due": now + timedelta(days=1),
            "n": BATCH,
        }
        ids = sorted(row[0] for row in conn.execute(claim, claim_params).fetchall())
        conn.commit()
        rows = conn.execute(
            "SELECT id, poll_history, conditional_polls FROM feed WHERE id = ANY(%s) ORDER BY id", (ids,)
        ).fetchall()
        following = now + timedelta(minutes=10, seconds=rng.random())
        with conn.cursor() as cur:
            for statement, params in _writes(design, rows, now, following, rng):
                cur.executemany(statement, params)
        conn.commit()
        done += len(ids)
        yield len(ids)


def _writes(
    design: str, rows: list[Any], now: datetime, following: datetime, rng: random.Random
) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The design's UPDATE statements for a batch of 304s, each with its rows' parameters."""
    from feedwatch.db import json_dumps

    state = [(now, now, rng.randint(1, 30), polls_before + 1, now) for _, _, polls_before in rows]
    ids = [feed_id for feed_id, _, _ in rows]
    if design == "wide_no_history":
        return [(_WRITES[design][0], [(*s, following, i) for s, i in zip(state, ids, strict=True)])]
    histories = [json_dumps([*history[-19:], _entry(now)]) for _, history, _ in rows]
    if design == "wide":
        params = [(*s, h, following, i) for s, h, i in zip(state, histories, ids, strict=True)]
        return [(_WRITES[design][0], params)]
    feed_params = [(*s, h, i) for s, h, i in zip(state, histories, ids, strict=True)]
    return [(_WRITES[design][0], feed_params), (_WRITES[design][1], [(following, i) for i in ids])]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--feeds", type=int, default=10_000)
    parser.add_argument("--polls", type=int, default=20_000, help="polls per design per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rng = random.Random(1)
    pg: dict[str, list[float]] = {d: [] for d in DESIGNS}
    client: dict[str, list[float]] = {d: [] for d in DESIGNS}
    hot: dict[str, float] = {}
    with ExitStack() as stack:
        conns, clocks = {}, {}
        for design in DESIGNS:
            url = stack.enter_context(postgres_database())
            conns[design], clocks[design] = create(url, design, args.feeds), Clock()
            stack.callback(conns[design].close)
        for _ in range(args.rounds):
            for design in DESIGNS:
                conn = conns[design]
                pg0, cpu0 = backend_cpu(conn), time.process_time()
                n = sum(poll_batches(conn, design, args.polls, clocks[design], rng))
                pg[design].append((backend_cpu(conn) - pg0) / n * 1000)
                client[design].append((time.process_time() - cpu0) / n * 1000)
        for design, conn in conns.items():
            # A backend hands its table counters to pg_stat_user_tables at most once a second, so
            # they lag the last rounds (a short run read 0 % for split): flushed at this commit.
            conn.execute("SELECT pg_stat_force_next_flush()")
            conn.commit()
            updated, in_place = conn.execute(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'feed'"
            ).fetchone()
            hot[design] = round(in_place / max(updated, 1), 3)
            conn.commit()
    wide = statistics.median(pg["wide"])
    print(
        json.dumps(
            {
                "feeds": args.feeds,
                "polls_per_round": args.polls,
                "rounds": args.rounds,
                "postgres_cpu_ms_per_poll": {d: [round(v, 4) for v in pg[d]] for d in DESIGNS},
                "client_cpu_ms_per_poll": {d: round(statistics.median(client[d]), 4) for d in DESIGNS},
                "feed_updates_in_place": hot,
                "ratio_to_wide": {d: round(statistics.median(pg[d]) / wide, 3) for d in DESIGNS},
            }
        )
    )


if __name__ == "__main__":
    main()
