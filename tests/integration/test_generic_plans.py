"""The service's repeated statements keep plans bounded by an index when statistics lag.

A new deployment's tables grow from nothing in minutes (every feed's first poll stores all its
items), and autovacuum analyzes them a minute or more later. Meanwhile the generic plans of the
prepared statements are made from statistics of a much smaller table, and some shapes of
statement then read a whole table or index on every call. Two did, until round 15
(docs/performance-history.md):

- an alert batch's read of its articles and their matches, written as one join, read the whole
  match table (5.8 ms a call at 33,000 matches in a benchmark, growing with the table);
- the beat's sweep for alerts whose message may be lost, one ``OR`` of two statuses ordered by
  id, walked the alert table along its primary key, fresh statistics or not (30 ms a sweep at
  300,000 alerts, every second, to find nothing).

A third, until round 47: the batch's "sent" update of its deliveries, planned while the
delivery table held ~300 rows and had never been analyzed (a server with autovacuum off never
analyzes it), took ``channel = …`` as the condition of the rate-limit index, whose first column
it is not, and read the whole index and every heap page on each call (8,500 entries a call in a
benchmark run; migration 0013).

Here every statement the service builds once and runs on every batch, message or sweep is
planned generically under such statistics, and on tables never analyzed at a few sizes; every
read of a table or an index must go through an index condition on the index's first column: by
the keys or ids asked for, never the whole table.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from sqlalchemy import Connection
from support import polls
from support.plans import TABLES, add_feeds, generic_plan, grow, leading_columns, load, reads, unbounded
from support.settings import database_settings

from feedwatch import alerts, db, status, store, stories

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def lagging(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Connection]:
    """A PostgreSQL database of 2,000 feeds whose tables were analyzed at 4,000 articles, 235
    matches and 4,000 delivered alerts, then grew elevenfold (autovacuum off for them, so the
    statistics stay)."""
    with database_settings("postgresql", tmp_path_factory.mktemp("plans")) as settings:
        engine = db.get_engine(settings)
        with engine.connect() as conn:
            raw = conn.exec_driver_sql
            for table in (
                "feed",
                "article",
                "match",
                "alert",
                "sighting",
                "storykeys",
                "storycopy",
                "delivery",
            ):
                raw(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
            add_feeds(raw)
            load(raw, 1, 4_000)
            for table in TABLES:
                raw(f"ANALYZE {table}")
            load(raw, 4_001, 44_000)
            conn.commit()
            yield conn


def _samples(conn: Connection) -> dict[str, Any]:
    """Values as the service binds them: the newest ids and keys, as a batch would ask."""

    def newest(query: str) -> list[Any]:
        return list(conn.exec_driver_sql(query).scalars().all())

    now = datetime.now(UTC)
    alert_ids = newest("SELECT id FROM alert ORDER BY id DESC LIMIT 25")
    return {
        "now": now,
        "article_ids": newest("SELECT id FROM article ORDER BY id DESC LIMIT 100"),
        "flagged_ids": newest("SELECT id FROM article WHERE flagged ORDER BY id DESC LIMIT 25"),
        "keys": newest("SELECT identity_key FROM article ORDER BY id DESC LIMIT 500"),
        "alert_ids": alert_ids,
        "signatures": newest(
            "SELECT array_to_string(band_keys, ',') FROM storykeys ORDER BY alert_id DESC LIMIT 10"
        ),
        "finish": {
            "b_id": alert_ids[0],
            "b_change": True,
            "b_status": "delivered",
            "b_at": now,
            "b_error": None,
        },
    }


#: (module, statement): what the statement binds, from ``_samples``.
STATEMENTS: dict[tuple[Any, str], Any] = {
    # the alerts worker, every message
    (alerts, "_LOAD_ALERTS"): lambda v: {"b_ids": v["alert_ids"]},
    (alerts, "_LOAD_ARTICLES"): lambda v: {"b_ids": v["flagged_ids"]},
    (alerts, "_LOAD_MATCHES"): lambda v: {"b_ids": v["flagged_ids"]},
    (alerts, "_DELIVERY_STATES"): lambda v: {"b_ids": v["alert_ids"]},
    (alerts, "_MARK_SENT"): lambda v: {"b_ids": v["alert_ids"], "b_channel": "jsonl", "b_now": v["now"]},
    (alerts, "_FINISH_ALERT"): lambda v: {**v["finish"], "b_error": None},
    # a poll batch's alerts, once published
    (store, "_MARK_QUEUED"): lambda v: {"b_ids": v["alert_ids"], "b_now": v["now"]},
    # the beat's sweep, every second
    (store, "_LOST_PENDING"): lambda v: {"b_before": v["now"], "b_limit": 1000},
    (store, "_LOST_QUEUED"): lambda v: {"b_before": v["now"], "b_limit": 1000},
    # a poll batch's lookups and the full-text request
    (store, "_IDS_BY_KEY"): lambda v: {"b_ids": v["keys"]},
    (store, "_STORED"): lambda v: {"b_keys": v["keys"]},
    (store, "_REQUEST_FULL_TEXT"): lambda v: {"b_ids": v["article_ids"], "b_now": v["now"]},
    (stories, "_STORIES_BY_SIGNATURE"): lambda v: {
        "b_sigs": v["signatures"],
        "b_since": v["now"] - timedelta(hours=48),
    },
    (stories, "_MINHASHES"): lambda v: {"b_ids": v["alert_ids"]},
}


@pytest.mark.parametrize(
    ("module", "name"), list(STATEMENTS), ids=[f"{m.__name__}.{n}" for m, n in STATEMENTS]
)
def test_reads_go_through_an_index(lagging: Connection, module: Any, name: str) -> None:
    values = STATEMENTS[module, name](_samples(lagging))
    plan = generic_plan(lagging, getattr(module, name), values)
    assert list(reads(plan)), plan
    assert unbounded(plan, leading_columns(lagging)) == [], json.dumps(plan, indent=1)


def test_no_index_is_read_whole_on_tables_never_analyzed(tmp_path: Path) -> None:
    """The same statements, planned on tables that were never analyzed (autovacuum off, or not
    yet come round), as each grows past the sizes where PostgreSQL's guesses change plans: no
    index is read through a condition on a later column alone, which reads all of it (the
    delivery update until migration 0013). At these sizes a plan may still read a small table
    whole, as PostgreSQL rightly prefers there; the first analyze replaces that plan."""
    with database_settings("postgresql", tmp_path) as settings, db.get_engine(settings).connect() as conn:
        for size in grow(conn, (300, 3_000)):
            samples, leading = _samples(conn), leading_columns(conn)
            for (module, name), bind in STATEMENTS.items():
                plan = generic_plan(conn, getattr(module, name), bind(samples))
                assert unbounded(plan, leading, seq_scans=True) == [], (
                    size,
                    name,
                    json.dumps(plan, indent=1),
                )


def _nodes(node: dict[str, Any], init_plans: bool = False) -> Iterator[dict[str, Any]]:
    """The plan's nodes; those of its InitPlans (what runs once, before the rest) only with
    ``init_plans``."""
    yield node
    for child in node.get("Plans", []):
        if init_plans or child.get("Parent Relationship") != "InitPlan":
            yield from _nodes(child, init_plans)


@pytest.mark.parametrize("due", [10, 1_500])
def test_the_tick_writes_its_claims_through_the_primary_key(tmp_path: Path, due: int) -> None:
    """The claim's UPDATE finds the rows its read of due feeds chose through ``feed_pkey``,
    never by reading the whole table, whether PostgreSQL plans it for the values (its first
    five runs on a connection) or generically: ``due`` of 3,000 feeds of the service's width
    are due, on statistics taken when all were. Written ``id IN (SELECT …)`` until round 62,
    the custom plan was a hash join against a sequential scan of ``feed`` here, and in a soak
    run every tick's (``benchmarks/soak.py``). The read's own plan is the planner's to choose."""
    with database_settings("postgresql", tmp_path) as settings:
        engine = db.get_engine(settings)
        polls.seed(engine, 3_000)
        with engine.connect() as conn:
            raw = conn.exec_driver_sql
            raw("ANALYZE feed")
            later = "next_check_at = now() + interval '1 day'"
            raw(f"UPDATE feed SET {later} WHERE id > (SELECT min(id) FROM feed) + {due - 1}")
            conn.commit()
            now = datetime.now(UTC)
            claim = store.due_claim("postgresql", now, 5_000, 300)
            compiled = claim.compile(dialect=conn.dialect)
            custom = raw(f"EXPLAIN (FORMAT JSON) {compiled}", compiled.params).scalar_one()
            plans = {"custom": custom[0]["Plan"], "generic": generic_plan(conn, claim, {})}
            claimed = conn.execute(claim).all()
            conn.rollback()
    for kind, plan in plans.items():
        finding = [n for n in _nodes(plan) if n["Node Type"] != "ModifyTable"]
        assert [(n["Node Type"], n.get("Index Name")) for n in finding] == [("Index Scan", "feed_pkey")], (
            kind,
            json.dumps(plan, indent=1),
        )
    assert len(claimed) == due


def test_a_batchs_histories_are_cast_once_a_statement(tmp_path: Path) -> None:
    """The feed-state write's histories (one ``text[]`` parameter, ``store.update_feeds``) are
    cast to ``json[]`` in an InitPlan, once a statement, also in the generic plan that
    PostgreSQL may choose once psycopg has prepared the statement: written in the row's
    expression, a generic plan cast the whole array again for every row it wrote, ~15× the
    statement's time (``benchmarks/state_forms.py``, round 63)."""
    with database_settings("postgresql", tmp_path) as settings:
        engine = db.get_engine(settings)
        ids = polls.seed(engine, 300)[: store.INSERT_CHUNK]
        statement, bits, _ = store._feed_update()
        mask = bits["poll_history"] | bits["claimed_at"]
        values = {
            "rows": json.dumps(
                [{"id": i, "mask": mask, "claimed_at": None, "h": n + 1} for n, i in enumerate(ids)]
            ),
            "ids": ids,
            "histories": [json.dumps(polls.HISTORY)] * len(ids),
        }
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE feed")
            plan = generic_plan(conn, statement, values, verbose=True)
    once = [n for n in _nodes(plan, init_plans=True) if n.get("Parent Relationship") == "InitPlan"]
    assert any("json[]" in " ".join(n.get("Output", [])).lower() for n in once), json.dumps(plan, indent=1)
    per_row = [n["Node Type"] for n in _nodes(plan) if "json[]" in " ".join(n.get("Output", [])).lower()]
    assert per_row == [], json.dumps(plan, indent=1)


def test_status_reads_the_full_text_stages_day_and_backlog_alone(tmp_path: Path) -> None:
    """``feedwatch status`` (and the metrics endpoint at every scrape) counts the full-text
    candidates waiting, those extracted in the last day and the day's failures by class. Among
    40,000 articles, 6,000 of them candidates that failed two days ago, 20 that failed and 5 that
    were extracted in the last hour and 10 waiting, analyzed, each of its reads of ``article``
    is bounded by an index condition: on the status and the time a candidate finished for the
    day's counts, on the status for the waiting ones; in the plan made for the values and in the
    generic one. With the index on the status alone (until migration 0015) the day's plans read
    every failed candidate's row to test its time (checked: the test fails), 2.5 s with 10
    million articles (round 65 in docs/performance-history.md)."""
    with database_settings("postgresql", tmp_path) as settings, db.get_engine(settings).connect() as conn:
        raw = conn.exec_driver_sql
        add_feeds(raw)
        load(raw, 1, 40_000)
        raw(
            "UPDATE article SET full_text_status = 'failed', full_text_error = 'http',"
            " extracted_at = now() - CASE WHEN id > 6000 THEN interval '1 hour' ELSE interval '2 days' END"
            " WHERE id <= 6020"
        )
        raw(
            "UPDATE article SET full_text_status = 'ok', extracted_at = now() - interval '1 hour'"
            " WHERE id BETWEEN 6021 AND 6025"
        )
        raw(
            "UPDATE article SET full_text_status = 'pending', full_text_requested_at = now() WHERE id > 39990"
        )
        raw("ANALYZE article")
        conn.commit()
        day = {"b_since": datetime.now(UTC) - timedelta(days=1)}
        statements = {
            "FAILURES_SINCE": (status.FAILURES_SINCE, day, "extracted_at"),
            "OK_SINCE": (status.OK_SINCE, day, "extracted_at"),
            "WAITING": (status.WAITING, {}, "full_text_status"),
        }
        plans = {
            (name, kind): (generic_plan(conn, stmt, values, custom=kind == "custom"), bound)
            for name, (stmt, values, bound) in statements.items()
            for kind in ("custom", "generic")
        }
        counted = [conn.execute(stmt, values).all() for stmt, values, _ in statements.values()]
    assert [sorted(map(tuple, rows)) for rows in counted] == [
        [("http", 20)],
        [(5,)],
        [(10, mock.ANY)],
    ]
    for key, (plan, bound) in plans.items():
        found = list(reads(plan))
        conditions = [
            n.get("Index Cond", "") for n in found if n.get("Index Name") == "ix_article_full_text_status"
        ]
        assert conditions and all(bound in c for c in conditions), (key, json.dumps(plan, indent=1))
        assert all(n["Node Type"] != "Seq Scan" for n in found), (key, json.dumps(plan, indent=1))
