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

Here every statement the service builds once and runs on every batch, message or sweep is
planned generically under such statistics, and every read of a table or an index must go
through an index condition: by the keys or ids asked for, never the whole table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg import sql
from sqlalchemy import Connection
from support.settings import database_settings

from feedwatch import alerts, db, store, stories

pytestmark = pytest.mark.timeout(120)

TABLES = ("feed", "article", "match", "alert", "sighting", "storykeys", "storycopy", "delivery")
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
_OTHERS = (
    """INSERT INTO sighting (article_id, feed_id, seen_at)
  SELECT id, 1 + mod(feed_id + 1, 2000), now() FROM article
  WHERE mod(id, 5) = 0 AND id > (SELECT coalesce(max(article_id), 0) FROM sighting)""",
    """INSERT INTO storykeys (alert_id, band_keys, created_at)
  SELECT alert.id,
    ARRAY(SELECT md5(alert.id::text || ':' || b) || md5(b::text) FROM generate_series(1, 21) AS b),
    now()
  FROM alert JOIN article ON article.id = alert.article_id
  WHERE article.flagged AND alert.id > (SELECT coalesce(max(alert_id), 0) FROM storykeys)""",
    """INSERT INTO storycopy (alert_id, article_id, feed_id, similarity, created_at)
  SELECT alert.id, article.id, article.feed_id, 0.9, now() FROM alert
  JOIN article ON article.id = alert.article_id + 1
  WHERE mod(alert.id, 10) = 0 AND alert.id > (SELECT coalesce(max(alert_id), 0) FROM storycopy)""",
    """INSERT INTO delivery (alert_id, channel, status, attempts, created_at, sent_at)
  SELECT id, 'jsonl', 'sent', 1, now(), now() FROM alert
  WHERE id > (SELECT coalesce(max(alert_id), 0) FROM delivery)""",
)
_MATCH = """INSERT INTO match (article_id, topic, score, terms, snippet, explanation, stage, created_at)
  SELECT id, 'ru_az', 1.0, '[]', 'snippet', '{}', 'feed', now() FROM article
  WHERE flagged AND id > (SELECT coalesce(max(article_id), 0) FROM match)"""


def load(raw: Any, first: int, last: int) -> None:
    """Articles ``first`` to ``last`` (every 17th flagged) and what the service stores with them."""
    raw(_ARTICLE, {"first": first, "last": last})
    for statement in (_MATCH, _ALERT, *_OTHERS):
        raw(statement)


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
            raw(
                "INSERT INTO feed (config_url, url, name, tags, interval_minutes, full_text, enabled,"
                " state, next_check_at, next_check_reason, unreported_claims, last_entries, last_new,"
                " error_count, total_errors, redirect_count, redirect_history, poll_history,"
                " conditional_polls, created_at, updated_at)"
                " SELECT 'http://127.0.0.1/f' || g, 'http://127.0.0.1/f' || g, 'f' || g, '[]', 5,"
                " false, true, 'ok', now(), '', 0, 0, 0, 0, 0, 0, '[]', '[]', 0, now(), now()"
                " FROM generate_series(1, 2000) AS g"
            )
            load(raw, 1, 4_000)
            for table in TABLES:
                raw(f"ANALYZE {table}")
            load(raw, 4_001, 44_000)
            conn.commit()
            yield conn


def _generic_plan(conn: Connection, statement: Any, values: dict[str, Any]) -> dict[str, Any]:
    """PostgreSQL's generic plan of ``statement`` as the service's engine sends it (prepared,
    its parameters numbered), explained for ``values``."""
    compiled = statement.compile(dialect=conn.dialect)
    params = {**compiled.params, **values}
    args: list[Any] = []

    def number(m: re.Match[str]) -> str:
        name, expanding = m.groups()
        if name:
            args.append(params[name])
            return f"${len(args)}"
        # An expanding IN (a list of constants): a parameter each, as SQLAlchemy sends it.
        first = len(args) + 1
        args.extend(params[expanding])
        return ", ".join(f"${first + i}" for i in range(len(params[expanding])))

    # psycopg placeholders: %(name)s, or %(name)b where the value goes in binary (store.in_list).
    text = re.sub(r"%\((\w+)\)[sb]|__\[POSTCOMPILE_(\w+)\]", number, str(compiled))
    raw = conn.exec_driver_sql
    raw(f"PREPARE plan_under_test AS {text}")
    try:
        raw("SET plan_cache_mode = force_generic_plan")
        # EXECUTE's arguments as literals: bound ones would have no type of their own.
        driver = conn.connection.driver_connection
        literals = ", ".join(sql.Literal(arg).as_string(driver) for arg in args)
        row = raw(f"EXPLAIN (FORMAT JSON) EXECUTE plan_under_test({literals})").scalar_one()
    finally:
        raw("RESET plan_cache_mode")
        raw("DEALLOCATE plan_under_test")
    plan: dict[str, Any] = (json.loads(row) if isinstance(row, str) else row)[0]["Plan"]
    return plan


def _reads(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of the plan that reads a table or one of its indexes (an UPDATE's target is
    written, not read: what finds its rows is below it)."""
    if node["Node Type"] != "ModifyTable" and ("Relation Name" in node or "Index Name" in node):
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
        "bands": newest("SELECT unnest(band_keys) FROM storykeys ORDER BY alert_id DESC LIMIT 200"),
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
    (store, "_SIGHTED"): lambda v: {"b_keys": v["keys"]},
    (store, "_REQUEST_FULL_TEXT"): lambda v: {"b_ids": v["article_ids"], "b_now": v["now"]},
    (stories, "_STORIES_BY_KEYS"): lambda v: {
        "b_keys": v["bands"],
        "b_since": v["now"] - timedelta(hours=48),
    },
    (stories, "_MINHASHES"): lambda v: {"b_ids": v["alert_ids"]},
}


@pytest.mark.parametrize(
    ("module", "name"), list(STATEMENTS), ids=[f"{m.__name__}.{n}" for m, n in STATEMENTS]
)
def test_reads_go_through_an_index(lagging: Connection, module: Any, name: str) -> None:
    values = STATEMENTS[module, name](_samples(lagging))
    plan = _generic_plan(lagging, getattr(module, name), values)
    assert list(_reads(plan)), plan
    assert _unbounded(plan) == [], json.dumps(plan, indent=1)
