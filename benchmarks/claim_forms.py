"""PostgreSQL's CPU for the tick's claim in its two forms, on a feed table of the service's width
whose statistics say most feeds are due (round 62 in docs/performance-history.md).

    .venv/bin/python benchmarks/claim_forms.py [--feeds 10000] [--due 500] [--claims 240]

``benchmarks/soak.py`` found every tick of a run at 1,000 polls/s reading the whole ``feed``
table: its statistics, a minute old, said every feed was due (each falls due every ten
seconds), and the claim's UPDATE found the rows its read had chosen by a hash join against a
sequential scan of the table. The two forms:

- ``in``: ``UPDATE feed … WHERE id IN (SELECT id … ORDER BY next_check_at LIMIT n FOR UPDATE
  SKIP LOCKED)``, the claim until round 62;
- ``array``: ``WHERE id = ANY(ARRAY(SELECT …))`` (``store.claim_statement``): the chosen ids
  as one array, found through the primary key;
- ``array_index``: ``array`` with ``SET LOCAL enable_seqscan = off`` first, so that the read
  of due feeds walks ``next_check_at``'s index (measured in round 62, not adopted).

A scratch database migrated as the service's (``feed`` at fillfactor 50), ``--feeds`` rows of
the service's width (a 20-entry history, 1,220 bytes of item spans, 400 of fingerprints),
analyzed while every feed was due. Then each claim: ``--due`` feeds made due, the claim run
through the service's engine (psycopg prepares it after its fifth run, and PostgreSQL chooses
generic or custom plans as in service; ``pg_prepared_statements`` counts which), its rows
reported as a 304 poll reports them (due again in ten seconds: a new row version each), and
``VACUUM`` every ``--vacuum-every`` claims, as the upkeep each minute. The forms alternate
claim by claim. Prints one JSON object: PostgreSQL's CPU (its backend's /proc counters) a
claim and a claimed feed for each form, the client's wall time a claim, the plans PostgreSQL
chose, and ``array``'s figures against ``in``'s.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import postgres_database, proc_cpu  # also puts this checkout's src/ first on sys.path

FORMS = ("in", "array", "array_index")
HISTORY = [
    {
        "at": (datetime(2026, 12, 1, tzinfo=UTC) - timedelta(minutes=10 * i)).isoformat(),
        "outcome": "not_modified",
    }
    for i in range(20)
]


def statement(form: str, now: datetime, limit: int) -> Any:
    """The claim in ``form``: ``array`` is the tick's (``store.due_claim``), ``in`` the same
    pieces as the tick joined them until round 62."""
    from sqlalchemy import update

    from feedwatch import store
    from feedwatch.models import Feed

    if form.startswith("array"):
        claim = store.due_claim("postgresql", now, limit, 300)
        # A text of its own: a prepared statement keeps the generic plan made under the settings
        # of its time, so array_index's is made with sequential scans off.
        return claim.prefix_with("/* index */") if form == "array_index" else claim
    table = store._table(Feed)
    chosen = store.due_feeds(now, limit).with_for_update(skip_locked=True).scalar_subquery()
    return (
        update(table)
        .where(table.c.id.in_(chosen))
        .values(**store.claim_values(now, 300))
        .returning(table.c.id, *store.CLAIM_RETURNING)
    )


def alternated(forms: tuple[str, ...], each: int) -> list[str]:
    """``each`` runs of every form, alternated so that each form runs first and last in turn:
    a, b, c, c, b, a, a, b, …"""
    cycle = [*forms, *reversed(forms)]
    return [cycle[k % len(cycle)] for k in range(len(forms) * each)]


def insert_feed_rows(engine: Any, feeds: int) -> list[int]:
    """``feeds`` enabled feed rows (``autovacuum_enabled`` off on the table), all due now, their
    wide columns empty; their ids."""
    with engine.connect() as conn:
        conn.exec_driver_sql("ALTER TABLE feed SET (autovacuum_enabled = false)")
        conn.exec_driver_sql(
            "INSERT INTO feed (config_url, url, name, tags, interval_minutes, full_text, enabled, state,"
            " next_check_at, next_check_reason, unreported_claims, last_entries, last_new, error_count,"
            " total_errors, redirect_count, redirect_history, poll_history, conditional_polls, created_at,"
            " updated_at) SELECT 'http://127.0.0.1/f' || g, 'http://127.0.0.1/f' || g, 'f' || g, '[]',"
            " 5, false, true, 'ok', now(), '', 0, 0, 0, 0, 0, 0, '[]', '[]', 0, now(), now()"
            f" FROM generate_series(1, {feeds}) AS g"
        )
        ids = [int(i) for i in conn.exec_driver_sql("SELECT id FROM feed ORDER BY id").scalars()]
        conn.commit()
    return ids


def seed(engine: Any, feeds: int) -> list[int]:
    """``feeds`` rows of the service's width, every one due, analyzed so; their ids."""
    from sqlmodel import Session

    from feedwatch import store

    ids = insert_feed_rows(engine, feeds)
    rng = random.Random(62)
    with Session(engine) as session:
        store.update_feeds(
            session,
            [
                (
                    i,
                    {
                        "item_spans": rng.randbytes(1220),
                        "entry_fingerprints": rng.randbytes(400),
                        "poll_history": HISTORY,
                    },
                )
                for i in ids
            ],
        )
        session.commit()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE feed")
        # Due again within the next ten seconds, as at 1,000 polls/s: the statistics say all due.
        conn.exec_driver_sql(
            "UPDATE feed SET next_check_at = now() + (id %% 10000) * interval '1 millisecond'"
        )
    return ids


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--feeds", type=int, default=10_000)
    parser.add_argument(
        "--due", type=int, default=500, help="feeds due at each claim (a tick's at 1,000 polls/s)"
    )
    parser.add_argument("--claims", type=int, default=240, help="claims of each form")
    parser.add_argument("--limit", type=int, default=5000, help="the claim's LIMIT (FEEDWATCH_CLAIM_BATCH)")
    parser.add_argument(
        "--vacuum-every", type=int, default=120, help="claims between VACUUMs (the upkeep's minute)"
    )
    args = parser.parse_args(argv)
    if min(args.feeds, args.due, args.claims, args.limit, args.vacuum_every) < 1 or args.due > args.feeds:
        parser.error("every size at least 1, and --due at most --feeds")
    from feedwatch import db

    rng = random.Random(6)
    cpu: dict[str, list[float]] = {form: [] for form in FORMS}
    wall: dict[str, list[float]] = {form: [] for form in FORMS}
    claimed: dict[str, list[int]] = {form: [] for form in FORMS}
    with postgres_database() as url:
        engine = db.make_engine(url)
        migrate(url)
        ids = seed(engine, args.feeds)
        with (
            engine.connect() as conn,
            engine.connect().execution_options(isolation_level="AUTOCOMMIT") as admin,
        ):
            backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            for k, form in enumerate(alternated(FORMS, args.claims)):
                due = rng.sample(ids, args.due)
                conn.exec_driver_sql(
                    "UPDATE feed SET next_check_at = now() - interval '1 second' WHERE id = ANY(%(ids)s)",
                    {"ids": due},
                )
                conn.commit()
                now = datetime.now(UTC)
                cpu0, t0 = proc_cpu(backend), time.perf_counter()
                if form == "array_index":
                    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
                rows = conn.execute(statement(form, now, args.limit)).all()
                conn.commit()
                wall[form].append(time.perf_counter() - t0)
                cpu[form].append(proc_cpu(backend) - cpu0)
                claimed[form].append(len(rows))
                conn.exec_driver_sql(
                    "UPDATE feed SET next_check_at = now() + interval '10 seconds', claimed_at = NULL,"
                    " unreported_claims = 0 WHERE id = ANY(%(ids)s)",
                    {"ids": [r[0] for r in rows]},
                )
                conn.commit()
                if (k + 1) % args.vacuum_every == 0:
                    admin.exec_driver_sql("VACUUM feed")
            plans = {
                _form_of(str(text)): {"generic": int(g), "custom": int(c)}
                for text, g, c in conn.exec_driver_sql(
                    "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
                    " WHERE statement LIKE 'UPDATE %%feed SET %%SKIP LOCKED%%'"
                )
            }
        engine.dispose()
    out: dict[str, Any] = {"sizes": vars(args), "forms": {}}
    for form in FORMS:
        feeds = sum(claimed[form])
        out["forms"][form] = {
            "claims": len(cpu[form]),
            "claimed_feeds": feeds,
            "postgres_ms_a_claim": round(sum(cpu[form]) / len(cpu[form]) * 1000, 3),
            "postgres_us_a_claimed_feed": round(sum(cpu[form]) / feeds * 1e6, 2) if feeds else None,
            "wall_ms_a_claim_median": round(statistics.median(wall[form]) * 1000, 3),
        }
    out["prepared_plans"] = plans
    base = out["forms"]["in"]
    for form in FORMS[1:]:
        out[f"{form}_vs_in"] = {
            key: round(out["forms"][form][key] / base[key], 3) if base[key] else None
            for key in ("postgres_ms_a_claim", "wall_ms_a_claim_median")
        }
    print(json.dumps(out, indent=2))


def _form_of(text: str) -> str:
    return "array_index" if "/* index */" in text else "array" if "ANY (array(" in text else "in"


def migrate(url: str) -> None:
    from feedwatch import db
    from feedwatch.settings import Settings

    db.upgrade(Settings(database_url=url))


if __name__ == "__main__":
    main()
