"""Tables filled in bulk, and PostgreSQL's generic plans of the service's statements over them
(``tests/integration/test_generic_plans.py``, ``test_schema.py``)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from psycopg import sql
from sqlalchemy import Connection

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


def add_feeds(raw: Any, count: int = 2000) -> None:
    """``count`` feeds, ids 1 to ``count`` (the articles of :func:`load` are spread over 2,000)."""
    raw(
        "INSERT INTO feed (config_url, url, name, tags, interval_minutes, full_text, enabled,"
        " state, next_check_at, next_check_reason, unreported_claims, last_entries, last_new,"
        " error_count, total_errors, redirect_count, redirect_history, poll_history,"
        " conditional_polls, created_at, updated_at)"
        " SELECT 'http://127.0.0.1/f' || g, 'http://127.0.0.1/f' || g, 'f' || g, '[]', 5,"
        " false, true, 'ok', now(), '', 0, 0, 0, 0, 0, 0, '[]', '[]', 0, now(), now()"
        f" FROM generate_series(1, {count}) AS g"
    )


def grow(conn: Connection, sizes: Iterable[int]) -> Iterator[int]:
    """2,000 feeds, then the tables :func:`load` fills grown to each of ``sizes`` articles in
    turn, never analyzed, every delivery claimed as the alerts worker's claim leaves it; yields
    each size once it is committed."""
    raw = conn.exec_driver_sql
    add_feeds(raw)
    done = 0
    for size in sizes:
        load(raw, done + 1, size)
        raw("UPDATE delivery SET status = 'sending', claimed_at = now()")
        conn.commit()
        done = size
        yield size


def generic_plan(
    conn: Connection, statement: Any, values: dict[str, Any], verbose: bool = False, custom: bool = False
) -> dict[str, Any]:
    """PostgreSQL's generic plan of ``statement`` as the service's engine sends it (prepared,
    its parameters numbered), explained for ``values``. ``verbose``: each node with its
    ``Output``, the expressions it computes. ``custom``: the plan made for ``values`` instead,
    as PostgreSQL makes one for a prepared statement's first five runs."""
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
        raw(f"SET plan_cache_mode = {'force_custom_plan' if custom else 'force_generic_plan'}")
        # EXECUTE's arguments as literals: bound ones would have no type of their own.
        driver = conn.connection.driver_connection
        literals = ", ".join(sql.Literal(arg).as_string(driver) for arg in args)
        options = "FORMAT JSON, VERBOSE" if verbose else "FORMAT JSON"
        row = raw(f"EXPLAIN ({options}) EXECUTE plan_under_test({literals})").scalar_one()
    finally:
        raw("RESET plan_cache_mode")
        raw("DEALLOCATE plan_under_test")
    plan: dict[str, Any] = (json.loads(row) if isinstance(row, str) else row)[0]["Plan"]
    return plan


def reads(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of the plan that reads a table or one of its indexes (an UPDATE's target is
    written, not read: what finds its rows is below it)."""
    if node["Node Type"] != "ModifyTable" and ("Relation Name" in node or "Index Name" in node):
        yield node
    for child in node.get("Plans", []):
        yield from reads(child)


def leading_columns(conn: Connection) -> dict[str, str]:
    """Each index of the database's tables by name, with its first column (expression indexes
    left out)."""
    rows = conn.exec_driver_sql(
        "SELECT i.relname, a.attname FROM pg_index x"
        " JOIN pg_class i ON i.oid = x.indexrelid"
        " JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]"
        " JOIN pg_namespace n ON n.oid = i.relnamespace WHERE n.nspname = 'public'"
    ).all()
    return {name: column for name, column in rows}


def unbounded(plan: dict[str, Any], leading: dict[str, str], seq_scans: bool = False) -> list[str]:
    """The reads of the plan that are not bounded by an index condition on the index's first
    column (``leading``, from :func:`leading_columns`). A condition on a later column alone still
    reads the whole index (a bitmap scan takes one: migration 0013), so it bounds nothing. With
    ``seq_scans``, a table read whole is allowed: only an index read whole counts."""
    found = []
    for n in reads(plan):
        if n["Node Type"] == "Bitmap Heap Scan":
            continue  # its bitmap index scans below are judged
        if seq_scans and n["Node Type"] == "Seq Scan":
            continue
        cond, index = n.get("Index Cond"), n.get("Index Name")
        first = leading.get(index or "")
        if cond is None or (first is not None and not re.search(rf"\b{re.escape(first)}\b", cond)):
            found.append(f"{n['Node Type']} on {n.get('Relation Name') or index} ({cond or 'no condition'})")
    return found
