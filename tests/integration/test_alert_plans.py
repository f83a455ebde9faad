"""The alert paths' reads keep plans bounded by an index when PostgreSQL's statistics lag.

A new deployment's tables grow from nothing in minutes (every feed's first poll stores all its
items), and autovacuum analyzes them a minute or more later. Meanwhile the generic plans of the
prepared statements are made from statistics of a much smaller table, and some shapes of
statement then read a whole table or index on every call:

- an alert batch's read of its articles and their matches, written as one join, read the whole
  match table (5.8 ms a call at 33,000 matches in a benchmark, growing with the table);
- the beat's sweep for alerts whose message may be lost, one ``OR`` of two statuses ordered by
  id, walked the alert table along its primary key, fresh statistics or not (30 ms a sweep at
  300,000 alerts, every second, to find nothing).

Here the statements that replace them are planned generically under such statistics, and every
read of a table or an index must go through an index condition.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql
from sqlalchemy import Connection
from support.settings import database_settings

from feedwatch import alerts, db, store

pytestmark = pytest.mark.timeout(120)

_ARTICLE = """INSERT INTO article (identity_key, feed_id, guid, url, title, summary, text, author,
    language, published_at, published_from_feed, fetched_at, content_hash, flagged,
    full_text_attempts)
  SELECT md5(g::text) || md5((g + 1)::text), 1 + g %% 2000, 'g' || g, 'http://127.0.0.1/a' || g,
    'title ' || g, repeat('s', 200), repeat('t ', 200), NULL, 'en', now(), true, now(),
    md5(g::text), g %% 17 = 0, 0
  FROM generate_series(%(first)s::int, %(last)s::int) AS g"""
_ALERT = """INSERT INTO alert (article_id, topics, status, attempts, created_at, queued_at,
    delivered_at, minhash)
  SELECT id, '[]', 'delivered', 1, now(), now(), now(), '[]' FROM article
  WHERE id > (SELECT coalesce(max(article_id), 0) FROM alert)"""
_MATCH = """INSERT INTO match (article_id, topic, score, terms, snippet, explanation, stage, created_at)
  SELECT id, 'ru_az', 1.0, '[]', 'snippet', '{}', 'feed', now() FROM article
  WHERE flagged AND id > (SELECT coalesce(max(article_id), 0) FROM match)"""


@pytest.fixture
def lagging(tmp_path: Path) -> Iterator[Connection]:
    """A PostgreSQL database of 2,000 feeds whose tables were analyzed at 4,000 articles, 235
    matches and 4,000 delivered alerts, then grew elevenfold (autovacuum off for them, so the
    statistics stay)."""
    with database_settings("postgresql", tmp_path) as settings:
        engine = db.get_engine(settings)
        with engine.connect() as conn:
            raw = conn.exec_driver_sql
            for table in ("feed", "article", "match", "alert"):
                raw(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
            raw(
                "INSERT INTO feed (config_url, url, name, tags, interval_minutes, full_text, enabled,"
                " state, next_check_at, next_check_reason, unreported_claims, last_entries, last_new,"
                " error_count, total_errors, redirect_count, redirect_history, poll_history,"
                " conditional_polls, created_at, updated_at)"
                " SELECT 'http://127.0.0.1/f' || g, 'http://127.0.0.1/f' || g, 'f' || g, '[]', 5,"
                " false, true, 'ok', now(), '', 0, 0, 0, 0, 0, 0, '[]', '[]', 0, now(), now()"
                " FROM generate_series(1, 2000) AS g"
            )
            raw(_ARTICLE, {"first": 1, "last": 4_000})
            raw(_MATCH)
            raw(_ALERT)
            raw("ANALYZE feed")
            raw("ANALYZE article")
            raw("ANALYZE match")
            raw("ANALYZE alert")
            raw(_ARTICLE, {"first": 4_001, "last": 44_000})
            raw(_MATCH)
            raw(_ALERT)
            conn.commit()
            yield conn


def _generic_plan(conn: Connection, statement: Any, values: dict[str, Any]) -> dict[str, Any]:
    """PostgreSQL's generic plan of ``statement`` as the service's engine sends it (prepared,
    its parameters numbered), explained for ``values``."""
    compiled = statement.compile(dialect=conn.dialect)
    names: list[str] = []

    def number(m: re.Match[str]) -> str:
        names.append(m.group(1))
        return f"${len(names)}"

    text = re.sub(r"%\((\w+)\)s", number, str(compiled))
    params = {**compiled.params, **values}
    raw = conn.exec_driver_sql
    raw(f"PREPARE plan_under_test AS {text}")
    try:
        raw("SET plan_cache_mode = force_generic_plan")
        # EXECUTE's arguments as literals: bound ones would have no type of their own.
        driver = conn.connection.driver_connection
        args = ", ".join(sql.Literal(params[name]).as_string(driver) for name in names)
        row = raw(f"EXPLAIN (FORMAT JSON) EXECUTE plan_under_test({args})").scalar_one()
    finally:
        raw("RESET plan_cache_mode")
        raw("DEALLOCATE plan_under_test")
    plan: dict[str, Any] = (json.loads(row) if isinstance(row, str) else row)[0]["Plan"]
    return plan


def _reads(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of the plan that reads a table or one of its indexes."""
    if "Relation Name" in node or "Index Name" in node:
        yield node
    for child in node.get("Plans", []):
        yield from _reads(child)


def _unbounded(plan: dict[str, Any]) -> list[str]:
    """The reads of the plan that are not bounded by an index condition."""
    return [
        f"{n['Node Type']} on {n.get('Relation Name') or n.get('Index Name')}"
        for n in _reads(plan)
        if n["Node Type"] != "Bitmap Heap Scan" and "Index Cond" not in n
    ]


@pytest.mark.parametrize("statement", ["_LOAD_ARTICLES", "_LOAD_MATCHES"])
def test_an_alert_batch_reads_only_its_rows(lagging: Connection, statement: str) -> None:
    newest = (
        lagging.exec_driver_sql("SELECT id FROM article WHERE flagged ORDER BY id DESC LIMIT 25")
        .scalars()
        .all()
    )
    plan = _generic_plan(lagging, getattr(alerts, statement), {"b_ids": list(newest)})
    reads = list(_reads(plan))
    assert reads, plan
    assert _unbounded(plan) == [], json.dumps(plan, indent=1)


@pytest.mark.parametrize("statement", ["_LOST_PENDING", "_LOST_QUEUED"])
def test_the_sweep_reads_only_its_status(lagging: Connection, statement: str) -> None:
    values = {"b_before": datetime.now(UTC), "b_limit": 1000}
    plan = _generic_plan(lagging, getattr(store, statement), values)
    assert list(_reads(plan)), plan
    assert _unbounded(plan) == [], json.dumps(plan, indent=1)
