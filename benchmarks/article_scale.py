"""What an ingested article and ``feedwatch status`` cost as a deployment's article table grows.

Articles are kept: the service has no retention, so a deployment's ``article`` table only grows
(10,000 feeds bringing 20 new items a day each store 73 million rows a year), while the
benchmarks that run the service reach a few hundred thousand (``soak.py``: ~400,000 in 30
minutes). This measures the same work on a small table and on a large one, side by side:

    .venv/bin/python benchmarks/article_scale.py [--sizes 1000000,4000000] [--rounds 4] [--feeds 100]
        [--setting wal_compression=lz4]

Two scratch databases migrated as the service's, served by one loopback farm (``farm.py``),
each with ``--feeds`` ingest feeds of 50 items, every item new on every hit:

- ``small``: nothing stored but what its rounds store;
- ``large``: grown to each of ``--sizes`` articles in turn, in SQL, as a deployment's rows
  would lie but for their order: a sha256 identity key each (random in its index, as the
  service's are), spread over 1,000 archive feeds, ``fetched_at`` a second apart counted back
  from the run's start as the ids rise (so at every size the last day holds 86,400 of them; a
  deployment's times rise with its ids), ~700 bytes of text, every fifth a full-text candidate
  (three of four extracted, one failed), every fiftieth flagged with a match and a sent alert.
  Then ``VACUUM ANALYZE`` of the tables grown, as the upkeep (or autovacuum) would after so
  many inserts, and a ``CHECKPOINT``.

At each size the rounds alternate between the two databases (the machine's level moves by a
third within minutes here, and moves both alike). A round polls every ingest feed once through
``pipeline.poll_feeds`` in this process, as a feeds worker does: parse, the seen-items lookup,
normalize, the rules, the articles' ``COPY``, matches, alerts, stories, the feed state. For
each round: this process's CPU an article, PostgreSQL's (the /proc counters of its backends of
that database), the wall time, the WAL an article (the server's: one database works at a
time), and whether a checkpoint began during it. Then ``status.db_status`` (what ``feedwatch
status`` reads from the database) five times on each database, by part.

``--setting NAME=VALUE`` sets a server setting for both databases' sessions (``ALTER DATABASE …
SET``; the server's own configuration is left as it is): what a deployment could tune, measured
on the same rows. ``settings_seen`` says what the sessions then had.

Prints one JSON object: for each size, each database's medians over its rounds and
``large_over_small`` (the large database's figure over the small one's). Needs PostgreSQL
(``FEEDWATCH_TEST_PG``; it creates and drops two ``fw_bench_*`` databases) and disk for the
large one: ~1.5 GB a million articles, table and indexes. Loading goes at ~1 million articles a
minute here, with progress on stderr. The farm runs as a child process and is stopped by pid.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from farm import Group
from poll_costs import checked, postgres_cpu
from run import QUICK, Service, farm_config, farm_process, insert_feeds, log, postgres_database

#: Feeds that hold the large database's preloaded articles (disabled: never polled).
ARCHIVE_FEEDS = 1_000
#: Articles a statement while growing the large database (progress is logged after each).
LOAD_CHUNK = 250_000
#: Seconds of ``fetched_at`` between two preloaded articles, counted back from the run's start:
#: the first is the newest, so at every size the last day holds 86,400 of them (what ``status``
#: counts of the last hour and day), and a million span ~12 days.
LOAD_SPACING = 1.0
#: ``status.db_status`` runs a database a size (the median is reported).
STATUS_RUNS = 5

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
SELECT id, '["russia_azerbaijan"]', 'sent', 1, fetched_at, fetched_at, fetched_at, '[]'
FROM article WHERE id > :after AND flagged
"""


def wal_lsn(service: Service) -> int:
    """The server's WAL insert position, in bytes."""
    return int(service.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')")[0][0])


def checkpoints(service: Service) -> int:
    """Checkpoints the server has begun (timed and requested)."""
    return int(service.execute("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")[0][0])


def grow(service: Service, first_feed: int, have: int, want: int, end: str) -> None:
    """Add articles ``have + 1`` … ``want`` (the first at ``end``, each later one ``LOAD_SPACING``
    before the one before) with their matches and alerts, then vacuum and analyze, then a
    checkpoint."""
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
        log(f"large: {hi:,} articles ({time.monotonic() - started:.0f} s)")
    service.execute(_GROW_MATCHES, {"after": after})
    service.execute(_GROW_ALERTS, {"after": after})
    with service.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        for table in ("article", "match", "alert"):
            conn.exec_driver_sql(f"VACUUM (ANALYZE) {table}")
        conn.exec_driver_sql("CHECKPOINT")
    log(f"large: grown to {want:,} articles, vacuumed, analyzed ({time.monotonic() - started:.0f} s)")


def loaded(service: Service, first_feed: int) -> dict[str, int]:
    """What the large database holds of the archive: its articles, matches and alerts."""
    archive = "SELECT id FROM article WHERE feed_id >= :first"
    counts = service.execute(
        f"SELECT (SELECT count(*) FROM ({archive}) AS a),"
        f" (SELECT count(*) FROM match WHERE article_id IN ({archive})),"
        f" (SELECT count(*) FROM alert WHERE article_id IN ({archive}))",
        {"first": first_feed},
    )[0]
    return dict(zip(("articles", "matches", "alerts"), map(int, counts), strict=True))


def table_mb(service: Service) -> dict[str, Any]:
    """The article table's heap (with its TOAST) and each of its indexes, MB."""
    (heap,) = service.execute("SELECT pg_table_size('article')")[0]
    indexes = service.execute(
        "SELECT indexname, pg_relation_size(quote_ident(indexname)::regclass) FROM pg_indexes"
        " WHERE tablename = 'article' ORDER BY indexname"
    )
    return {"heap": round(heap / 2**20, 1), "indexes": {name: round(b / 2**20, 1) for name, b in indexes}}


def ingest_round(service: Service, ctx: Any, feed_ids: list[int]) -> dict[str, Any]:
    """Poll every ingest feed once; what it cost a stored article."""
    from feedwatch import pipeline

    size = service.settings.poll_batch_size
    cpu, pg, wal, ck = time.process_time(), postgres_cpu(service), wal_lsn(service), checkpoints(service)
    wall = time.perf_counter()
    stored = 0
    for k in range(0, len(feed_ids), size):
        stored += sum(r.new for r in checked(pipeline.poll_feeds(ctx, feed_ids[k : k + size])))
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    pg = postgres_cpu(service) - pg
    if stored == 0:
        raise SystemExit("a round stored no article: the farm's ingest feeds brought nothing new")
    return {
        "articles": stored,
        "cpu_ms": cpu / stored * 1000,
        "postgres_ms": pg / stored * 1000,
        "wall_ms": wall / stored * 1000,
        "wal_bytes": (wal_lsn(service) - wal) / stored,
        "checkpoint": checkpoints(service) > ck,
    }


def status_ms(service: Service) -> dict[str, float]:
    """``status.db_status``'s parts (``status.DB_PARTS``), ms each, and their total: the median
    of ``STATUS_RUNS`` runs."""
    from feedwatch import db, status
    from feedwatch.timeutil import utcnow

    runs: dict[str, list[float]] = {name: [] for name in (*status.DB_PARTS, "total")}
    for _ in range(STATUS_RUNS):
        with db.session_scope(service.settings) as session:
            now = utcnow()
            for name, part in status.DB_PARTS.items():
                started = time.perf_counter()
                part(session, now, service.settings)
                runs[name].append((time.perf_counter() - started) * 1000)
            runs["total"].append(sum(ms[-1] for name, ms in runs.items() if name != "total"))
    return {name: round(statistics.median(ms), 2) for name, ms in runs.items()}


def medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    figures = ("cpu_ms", "postgres_ms", "wall_ms", "wal_bytes")
    result: dict[str, Any] = {
        k: round(statistics.median(r[k] for r in rounds), 4 if k != "wal_bytes" else 0) for k in figures
    }
    result["articles"] = sum(r["articles"] for r in rounds)
    result["rounds_with_checkpoint"] = sum(r["checkpoint"] for r in rounds)
    result["each"] = [{k: round(r[k], 4) for k in figures} for r in rounds]
    return result


def ratio(large: float, small: float) -> float | None:
    """``large`` over ``small``; None where ``small`` read nothing (PostgreSQL's CPU comes in
    ticks of 10 ms, which a small run's rounds may not reach)."""
    return round(large / small, 3) if small else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "--sizes", default="1000000,4000000", help="the large database's articles at each step, rising"
    )
    parser.add_argument("--rounds", type=int, default=4, help="rounds of each database at each size")
    parser.add_argument("--feeds", type=int, default=100, help="ingest feeds (50 new items each a round)")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a server setting for both databases' sessions (ALTER DATABASE … SET), e.g. wal_compression=lz4",
    )
    args = parser.parse_args(argv)
    settings_given = dict(pair.split("=", 1) for pair in args.setting if "=" in pair)
    if len(settings_given) != len(args.setting) or not all(
        n.replace("_", "").isalnum() for n in settings_given
    ):
        parser.error("--setting: NAME=VALUE, a PostgreSQL setting's name")
    try:
        sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s]
    except ValueError:
        parser.error(f"--sizes: whole numbers separated by commas, not {args.sizes!r}")
    if not sizes or sizes != sorted(set(sizes)) or sizes[0] < 1:
        parser.error("--sizes: one or more article counts, rising, each at least 1")
    if args.rounds < 1 or args.feeds < 1:
        parser.error("--rounds and --feeds: at least 1")

    from feedwatch import db, pipeline
    from feedwatch.logs import configure_logging
    from feedwatch.settings import Settings
    from feedwatch.timeutil import utcnow

    configure_logging(Settings(log_level="WARNING", log_format="json"))
    farm_sizes = replace(QUICK, feeds=10, ingest_feeds=args.feeds)
    ingest = Group(name="ingest", feeds=args.feeds, mix={"new": 1}, items=50, new_items=50)
    archive = Group(name="poll", feeds=ARCHIVE_FEEDS, mix={"304": 1})
    result: dict[str, Any] = {
        "feeds": args.feeds,
        "rounds": args.rounds,
        "settings": settings_given,
        "steps": [],
    }
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fw-scale-")))
        port, _ = stack.enter_context(farm_process(farm_config(farm_sizes), tmp))
        services: dict[str, Service] = {}
        contexts: dict[str, Any] = {}
        feed_ids: dict[str, list[int]] = {}
        for name in ("small", "large"):
            service = Service(tmp / name, stack.enter_context(postgres_database()), "memory://", 1)
            stack.callback(service.stop)
            for setting, value in settings_given.items():
                quoted = value.replace("'", "''")
                service.execute(f"ALTER DATABASE {service.engine.url.database} SET {setting} = '{quoted}'")
            insert_feeds(service, ingest, port, 10.0, True)
            insert_feeds(service, archive, port, 10.0, False)
            services[name] = service
            contexts[name] = pipeline.Context(settings=service.settings)
            feed_ids[name] = [
                int(i) for (i,) in service.execute("SELECT id FROM feed WHERE enabled ORDER BY id")
            ]
        (first_archive,) = services["large"].execute("SELECT min(id) FROM feed WHERE NOT enabled")[0]
        if settings_given:  # new sessions take the databases' settings
            db.dispose_engines()
            for service in services.values():
                service.engine.dispose()
            result["settings_seen"] = {
                name: dict(
                    service.execute(
                        "SELECT name, setting FROM pg_settings WHERE name = ANY(:n)",
                        {"n": list(settings_given)},
                    )
                )
                for name, service in services.items()
            }
        # Each database's first poll of its feeds: connections, prepared statements, caches.
        for name in services:
            ingest_round(services[name], contexts[name], feed_ids[name])
        gc.collect()
        gc.freeze()
        gc.set_threshold(*pipeline.GC_THRESHOLDS)
        end = utcnow().isoformat()
        have = 0
        for size in sizes:
            grow(services["large"], int(first_archive), have, size, end)
            have = size
            rounds: dict[str, list[dict[str, Any]]] = {"small": [], "large": []}
            for n in range(args.rounds):
                for name in ("small", "large") if n % 2 == 0 else ("large", "small"):
                    rounds[name].append(ingest_round(services[name], contexts[name], feed_ids[name]))
            step: dict[str, Any] = {
                "articles": size,
                "loaded": loaded(services["large"], int(first_archive)),
                "large_mb": table_mb(services["large"]),
            }
            for name in ("small", "large"):
                step[name] = {**medians(rounds[name]), "status_ms": status_ms(services[name])}
            step["large_over_small"] = {
                k: ratio(step["large"][k], step["small"][k])
                for k in ("cpu_ms", "postgres_ms", "wall_ms", "wal_bytes")
            }
            step["large_over_small"]["status_ms"] = ratio(
                step["large"]["status_ms"]["total"], step["small"]["status_ms"]["total"]
            )
            log(f"size {size:,}: {json.dumps(step['large_over_small'])}")
            result["steps"].append(step)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
