"""A deployment's archive of stored articles, grown in SQL in a benchmark's database.

The service keeps every article it stores (10,000 feeds bringing 20 new items a day each store 73
million a year), while a benchmark's database starts empty. ``article_scale.py`` and ``run.py
--archive N`` preload one:

- ``ARCHIVE_FEEDS`` disabled feed rows (never polled) hold the archive's articles;
- each article has a sha256 identity key (random in its index, as the service's are), a
  ``fetched_at`` a second apart counted back from ``end`` as the ids rise (so the last day
  holds 86,400 of them at every size: what ``feedwatch status`` counts of the last hour and
  day; a deployment's times rise with its ids), ~700 bytes of text, every fifth a full-text
  candidate (three of four extracted, one failed), every fiftieth flagged with a match and a
  delivered alert;
- then ``VACUUM ANALYZE`` of the tables grown, as the upkeep (or autovacuum) would after so many
  inserts, and a ``CHECKPOINT``.

10 million articles took 4–6 minutes to load with their ``VACUUM ANALYZE`` on two cores (332–334
s on Intel in round 66): 9.8 GB of heap and 2.0 GB of the article table's indexes, ~1.2 GB a
million. Needs PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

#: Feeds that hold the archive's articles (disabled: never polled).
ARCHIVE_FEEDS = 1_000
#: How the archive's feed URLs begin (``https://archive<i>.example/feed.xml``): no farm group's
#: does, so a benchmark tells the archive's feeds from the ones it polls by it.
URL_PREFIX = "https://archive"
#: Articles a statement while growing (progress is logged after each).
LOAD_CHUNK = 250_000
#: Seconds of ``fetched_at`` between two archived articles, counted back from ``end``: the first
#: is the newest, so at every size the last day holds 86,400 of them, and a million span ~12 days.
LOAD_SPACING = 1.0

_GROW_ARTICLES = """
INSERT INTO article (identity_key, feed_id, guid, url, title, summary, text, author, language,
    published_at, published_from_feed, fetched_at, content_hash, flagged, full_text,
    full_text_status, full_text_error, full_text_requested_at, full_text_attempts, extracted_at)
SELECT encode(sha256(convert_to('archive:' || g, 'UTF8')), 'hex'),
    :first_feed + g % :feeds,
    NULL,
    'https://archive' || (g % 997) || '.example/news/' || g,
    'Archived story ' || g || ' on the region and its neighbours',
    '',
    repeat(md5(g::text) || ' ', 21),
    NULL,
    'en',
    t.at, true, t.at,
    encode(sha256(convert_to('content:' || g, 'UTF8')), 'hex'),
    g % 50 = 0,
    NULL,
    CASE WHEN g % 5 <> 0 THEN NULL WHEN g % 20 = 0 THEN 'failed' ELSE 'ok' END,
    CASE WHEN g % 20 = 0 THEN 'http' END,
    CASE WHEN g % 5 = 0 THEN t.at END,
    CASE WHEN g % 5 = 0 THEN 1 ELSE 0 END,
    CASE WHEN g % 5 = 0 THEN t.at + interval '1 minute' END
FROM generate_series(CAST(:lo AS BIGINT), CAST(:hi AS BIGINT)) AS g,
    LATERAL (SELECT CAST(:end AS TIMESTAMPTZ) - (g - 1) * :spacing * interval '1 second' AS at) AS t
"""
_GROW_MATCHES = """
INSERT INTO match (article_id, topic, score, terms, snippet, explanation, stage, created_at)
SELECT id, 'russia_azerbaijan', 1.0, '["Russia", "Azerbaijan"]', left(title, 60), '{}', 'feed', fetched_at
FROM article WHERE id > :after AND flagged
"""
_GROW_ALERTS = """
INSERT INTO alert (article_id, topics, status, attempts, created_at, queued_at, delivered_at, minhash)
SELECT id, '["russia_azerbaijan"]', 'delivered', 1, fetched_at, fetched_at, fetched_at, '[]'
FROM article WHERE id > :after AND flagged
"""


def insert_feeds(service: Any) -> int:
    """The archive's ``ARCHIVE_FEEDS`` feed rows, disabled; the first one's id (theirs are the
    highest ids: the archive's articles are those of feeds at or above it)."""
    from sqlalchemy import insert

    from feedwatch.models import Feed, origin_of

    rows = []
    for i in range(ARCHIVE_FEEDS):
        url = f"{URL_PREFIX}{i}.example/feed.xml"
        feed = Feed(config_url=url, url=url, origin=origin_of(url), name=f"archive {i}", enabled=False)
        rows.append(feed.model_dump(exclude={"id"}))
    with service.engine.begin() as conn:
        conn.execute(insert(Feed), rows)
    query = "SELECT min(id) FROM feed WHERE config_url LIKE :prefix"
    return int(service.execute(query, {"prefix": URL_PREFIX + "%"})[0][0])


def grow(service: Any, first_feed: int, have: int, want: int, end: str, log: Callable[[str], None]) -> float:
    """Add articles ``have + 1`` … ``want`` (the first at ``end``, each later one ``LOAD_SPACING``
    before the one before) with their matches and alerts, then vacuum and analyze, then a
    checkpoint. The seconds it took."""
    (after,) = service.execute("SELECT coalesce(max(id), 0) FROM article")[0]
    started = time.monotonic()
    for lo in range(have + 1, want + 1, LOAD_CHUNK):
        hi = min(lo + LOAD_CHUNK - 1, want)
        params = {
            "lo": lo,
            "hi": hi,
            "first_feed": first_feed,
            "feeds": ARCHIVE_FEEDS,
            "end": end,
            "spacing": LOAD_SPACING,
        }
        service.execute(_GROW_ARTICLES, params)
        log(f"archive: {hi:,} articles ({time.monotonic() - started:.0f} s)")
    service.execute(_GROW_MATCHES, {"after": after})
    service.execute(_GROW_ALERTS, {"after": after})
    with service.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        for table in ("article", "match", "alert"):
            conn.exec_driver_sql(f"VACUUM (ANALYZE) {table}")
        conn.exec_driver_sql("CHECKPOINT")
    seconds = time.monotonic() - started
    log(f"archive: grown to {want:,} articles, vacuumed, analyzed ({seconds:.0f} s)")
    return seconds


def prewarm(service: Any) -> dict[str, Any]:
    """Read the article identity index into PostgreSQL's buffer pool (``pg_prewarm``, a contrib
    module), as a deployment's pool holds it after running a while if the pool is large enough
    (the pages its new articles' keys land on are random: round 66). The pool's size, the index's
    size and the blocks read into the pool (all of the index's: ``index_blocks``)."""
    from feedwatch.db import identity_index

    with service.engine.connect() as conn:
        index = identity_index(conn)
    assert index is not None, "PostgreSQL's article identity index"
    service.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
    (blocks,) = service.execute("SELECT pg_prewarm(CAST(:index AS regclass))", {"index": index.name})[0]
    return {
        "index": index.name,
        "index_mb": round(index.size_bytes / 2**20, 1),
        "shared_buffers_mb": round(index.pool_bytes / 2**20, 1),
        "blocks": int(blocks),
        "index_blocks": index.size_bytes // 8192,
    }


def loaded(service: Any, first_feed: int) -> dict[str, int]:
    """What the database holds of the archive: its articles, matches and alerts."""
    archive = "SELECT id FROM article WHERE feed_id >= :first"
    counts = service.execute(
        f"SELECT (SELECT count(*) FROM ({archive}) AS a),"
        f" (SELECT count(*) FROM match WHERE article_id IN ({archive})),"
        f" (SELECT count(*) FROM alert WHERE article_id IN ({archive}))",
        {"first": first_feed},
    )[0]
    return dict(zip(("articles", "matches", "alerts"), map(int, counts), strict=True))


def table_mb(service: Any) -> dict[str, Any]:
    """The article table's heap (with its TOAST) and each of its indexes, MB."""
    (heap,) = service.execute("SELECT pg_table_size('article')")[0]
    indexes = service.execute(
        "SELECT indexname, pg_relation_size(quote_ident(indexname)::regclass) FROM pg_indexes"
        " WHERE tablename = 'article' ORDER BY indexname"
    )
    return {"heap": round(heap / 2**20, 1), "indexes": {name: round(b / 2**20, 1) for name, b in indexes}}
