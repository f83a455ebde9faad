"""PostgreSQL's CPU and the client's for a poll batch's feed-state ``UPDATE``, by how the poll
history reaches it (round 63 in docs/performance-history.md).

    .venv/bin/python benchmarks/state_forms.py [--feeds 10000] [--batch 200] [--rounds 150]

``store.update_feeds`` sends a batch's changed feed columns as one JSON document of rows that
the statement reads back with ``json_to_recordset``. The poll history is a ``json`` column: nested
in its row, PostgreSQL lexes it as part of the document and then hands its text to ``json``'s
input function, which lexes it again. Round 58 found the history a third of the statement's
time (~11 of ~32 µs a row). The forms:

- ``nested``: the history in its row, the service's statement until round 63;
- ``string``: the history as a JSON string inside its row (its JSON text, escaped), read as
  ``text`` and cast to ``json``: the document's lexer reads one string token instead of the
  history's ~100 tokens, but de-escapes its quotes;
- ``apart_text``: the histories as a ``text[]`` parameter of their own, cast to ``json[]`` in a
  scalar subquery, each row naming its history's place in it; the parameters in psycopg's text
  format (through SQLAlchemy), which escapes each quote of a history in a Python callback;
- ``apart``: ``apart_text`` with the histories in binary: ``store.update_feeds`` since round 63;
- ``none``: ``nested`` without the histories: what the history costs at all.

A scratch database migrated as the service's, ``--feeds`` rows of the service's width (item
spans, fingerprints, an hourly feed's history as ``run.hourly_history`` makes it: seven entries,
1,361 bytes). Each round: ``--batch`` feeds (sorted ids, as a batch writes them) given what a
304 poll changes (fourteen columns, the history with its newest entry moved), written in one
transaction. The forms alternate round by round, and ``VACUUM`` runs every ``--vacuum-every``
rounds, as the upkeep each minute. Prints one JSON object: PostgreSQL's CPU a row (its backend's
/proc counters), the client's CPU a row (encoding the rows and the parameters in this process),
whether each form's histories read back as written, and each form's figures against
``nested``'s.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from claim_forms import alternated, migrate
from run import hourly_history, postgres_database, proc_cpu  # also puts this checkout's src/ first

FORMS = ("nested", "string", "apart_text", "apart", "none")


@cache
def statement(form: str) -> tuple[Any, dict[str, int], Any]:
    """The ``UPDATE`` of ``nested``, ``string`` or ``apart_text``; the columns' bits; the encoder
    of the rows' values (``store._json_encoder``)."""
    from sqlalchemy import BigInteger, Integer, Text, case, cast, column, literal_column, update
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.sql import any_, bindparam
    from sqlalchemy.sql.expression import ColumnClause

    from feedwatch import store
    from feedwatch.models import Feed

    table = store._table(Feed)
    names = [c.name for c in table.c if c.name != "id"]
    bits = {name: 1 << i for i, name in enumerate(names)}
    inside = names if form == "nested" else [n for n in names if n != "poll_history"]
    extra: list[ColumnClause[Any]] = [column("id", Integer), column("mask", BigInteger)]
    if form == "string":
        extra.append(column("poll_history", Text))
    elif form == "apart_text":
        extra.append(column("h", Integer))
    rows = store._json_rows(table, inside, *extra)
    history: Any
    if form == "nested":
        history = rows.c.poll_history
    elif form == "string":
        history = cast(rows.c.poll_history, table.c.poll_history.type)
    else:  # apart_text: the service's statement, its array bound in the text format
        history = store._histories_as_json(bindparam("histories", type_=postgresql.ARRAY(Text)))[rows.c.h]
    zero: Any = literal_column("0")
    values = {
        name: case(
            (
                rows.c.mask.op("&")(literal_column(str(bit))) != zero,
                history if name == "poll_history" else rows.c[name],
            ),
            else_=table.c[name],
        )
        for name, bit in bits.items()
    }
    ids = any_(bindparam("ids", type_=postgresql.ARRAY(Integer)))
    stmt = update(table).where(table.c.id == ids, table.c.id == rows.c.id).values(values)
    return stmt, bits, store._json_encoder(table, inside)


def write(conn: Any, form: str, changes: list[tuple[int, dict[str, Any]]]) -> None:
    """The batch's changes in ``form``; ``apart`` is ``store.update_feeds`` itself."""
    from sqlmodel import Session

    from feedwatch import store
    from feedwatch.db import json_dumps

    if form == "apart":
        store.update_feeds(Session(bind=conn), changes)
        return
    if form == "none":
        form = "nested"
        changes = [(i, {k: v for k, v in c.items() if k != "poll_history"}) for i, c in changes]
    stmt, bits, encode = statement(form)
    params: dict[str, Any] = {"ids": [i for i, _ in changes]}
    if form == "nested":
        params["rows"] = [{"id": i, "mask": sum(map(bits.__getitem__, v)), **encode(v)} for i, v in changes]
    elif form == "string":
        params["rows"] = [
            {
                "id": i,
                "mask": sum(map(bits.__getitem__, v)),
                **encode({k: json_dumps(x) if k == "poll_history" else x for k, x in v.items()}),
            }
            for i, v in changes
        ]
    else:
        histories: list[str] = []
        params["rows"] = [
            {"id": i, "mask": sum(map(bits.__getitem__, v)), **encode(store._history_apart(v, histories))}
            for i, v in changes
        ]
        params["histories"] = histories
    conn.execute(stmt, params)


def changes_of(ids: list[int], histories: dict[int, list[dict[str, Any]]], now: datetime) -> list[Any]:
    """What a 304 poll of each feed changes (``feedstate.record_success``'s columns for it)."""
    out = []
    for i in ids:
        history = histories[i]
        last = history[-1]
        history = [
            *history[:-1],
            {**last, "at": now.isoformat(timespec="seconds"), "n": last.get("n", 1) + 1},
        ]
        histories[i] = history
        out.append(
            (
                i,
                {
                    "state": "ok",
                    "next_check_at": now + timedelta(seconds=10),
                    "next_check_reason": "304 → kept 10.4 min (rate 24.0/day)",
                    "claimed_at": None,
                    "unreported_claims": 0,
                    "last_polled_at": now,
                    "last_ok_at": now,
                    "last_status": 304,
                    "last_entries": 0,
                    "last_new": 0,
                    "last_duration_ms": random.randint(1, 40),
                    "poll_history": history,
                    "conditional_polls": random.randint(1, 19),
                    "updated_at": now,
                },
            )
        )
    return out


def seed(engine: Any, feeds: int, now: datetime) -> dict[int, list[dict[str, Any]]]:
    """``feeds`` rows of the service's width; their histories by id."""
    from claim_forms import insert_feed_rows
    from sqlmodel import Session

    from feedwatch import store

    ids = insert_feed_rows(engine, feeds)
    rng = random.Random(63)
    histories = {i: hourly_history("304", now, 10.0) for i in ids}
    with Session(engine) as session:
        store.update_feeds(
            session,
            [
                (
                    i,
                    {
                        "item_spans": rng.randbytes(1220),
                        "entry_fingerprints": rng.randbytes(400),
                        "poll_history": histories[i],
                    },
                )
                for i in ids
            ],
        )
        session.commit()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE feed")
    return histories


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--feeds", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=200, help="rows a statement (a poll batch's)")
    parser.add_argument("--rounds", type=int, default=150, help="statements of each form")
    parser.add_argument("--vacuum-every", type=int, default=40, help="rounds between VACUUMs")
    args = parser.parse_args(argv)
    if min(args.feeds, args.batch, args.rounds, args.vacuum_every) < 1 or args.batch > args.feeds:
        parser.error("every size at least 1, and --batch at most --feeds")
    from feedwatch import db

    random.seed(58)
    rng = random.Random(63)
    server: dict[str, float] = dict.fromkeys(FORMS, 0.0)
    client: dict[str, float] = dict.fromkeys(FORMS, 0.0)
    wall: dict[str, float] = dict.fromkeys(FORMS, 0.0)
    written: dict[str, int] = dict.fromkeys(FORMS, 0)
    now = datetime(2026, 12, 7, tzinfo=UTC)
    with postgres_database() as url:
        engine = db.make_engine(url)
        migrate(url)
        histories = seed(engine, args.feeds, now)
        ids = sorted(histories)
        with (
            engine.connect() as conn,
            engine.connect().execution_options(isolation_level="AUTOCOMMIT") as admin,
        ):
            backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            for k, form in enumerate(alternated(FORMS, args.rounds)):
                now += timedelta(seconds=1)
                changes = changes_of(sorted(rng.sample(ids, args.batch)), histories, now)
                cpu0, own0, t0 = proc_cpu(backend), time.process_time(), time.perf_counter()
                write(conn, form, changes)
                conn.commit()
                wall[form] += time.perf_counter() - t0
                client[form] += time.process_time() - own0
                server[form] += proc_cpu(backend) - cpu0
                written[form] += len(changes)
                if (k + 1) % args.vacuum_every == 0:
                    admin.exec_driver_sql("VACUUM feed")
            check = {}
            # What each form stores reads back as it was written.
            for form in ("string", "apart_text", "apart"):
                now += timedelta(seconds=1)
                changes = changes_of(ids[: args.batch], histories, now)
                write(conn, form, changes)
                conn.commit()
                stored = conn.exec_driver_sql(
                    "SELECT id, poll_history FROM feed WHERE id = ANY(%(ids)s)", {"ids": ids[: args.batch]}
                )
                check[form] = all(history == histories[i] for i, history in stored)
        engine.dispose()
    out: dict[str, Any] = {"sizes": vars(args), "histories_read_back_as_written": check, "forms": {}}
    for form in FORMS:
        out["forms"][form] = {
            "rows": written[form],
            "postgres_us_a_row": round(server[form] / written[form] * 1e6, 2),
            "client_us_a_row": round(client[form] / written[form] * 1e6, 2),
            "wall_us_a_row": round(wall[form] / written[form] * 1e6, 2),
        }
    base = out["forms"]["nested"]
    for form in FORMS[1:]:
        out[f"{form}_vs_nested"] = {
            key: round(out["forms"][form][key] / base[key], 3) if base[key] else None
            for key in base
            if key != "rows"
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
