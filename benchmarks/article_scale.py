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
  would lie but for their order (``archive.py``: sha256 identity keys, random in their index
  as the service's are; a day of 86,400 in the last day at every size; a fifth full-text
  candidates; a fiftieth flagged with a match and a delivered alert; then ``VACUUM ANALYZE``
  and a ``CHECKPOINT``).

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
large one: ~1.2 GB a million articles, table and indexes (``archive.py``: 10 million load in
4–6 minutes), with progress on stderr. The farm runs as a child process and is stopped by pid.
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

import archive
from farm import Group
from poll_costs import checked, postgres_cpu
from run import (
    QUICK,
    Service,
    farm_config,
    farm_process,
    insert_feeds,
    log,
    postgres_database,
    server_reading,
    wal_between,
)

#: ``status.db_status`` runs a database a size (the median is reported).
STATUS_RUNS = 5


def ingest_round(service: Service, ctx: Any, feed_ids: list[int]) -> dict[str, Any]:
    """Poll every ingest feed once; what it cost a stored article."""
    from feedwatch import pipeline

    size = service.settings.poll_batch_size
    cpu, pg, wal = time.process_time(), postgres_cpu(service), server_reading(service)
    wall = time.perf_counter()
    stored = 0
    for k in range(0, len(feed_ids), size):
        stored += sum(r.new for r in checked(pipeline.poll_feeds(ctx, feed_ids[k : k + size])))
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    pg = postgres_cpu(service) - pg
    written = wal_between(wal, server_reading(service), stored)
    if stored == 0:
        raise SystemExit("a round stored no article: the farm's ingest feeds brought nothing new")
    assert written is not None  # PostgreSQL's
    return {
        "articles": stored,
        "cpu_ms": cpu / stored * 1000,
        "postgres_ms": pg / stored * 1000,
        "wall_ms": wall / stored * 1000,
        "wal_bytes": written["bytes_each"],
        "checkpoint": written["checkpoints_timed"] + written["checkpoints_requested"] > 0,
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
            first_archive = archive.insert_feeds(service)
            services[name] = service
            contexts[name] = pipeline.Context(settings=service.settings)
            feed_ids[name] = [
                int(i) for (i,) in service.execute("SELECT id FROM feed WHERE enabled ORDER BY id")
            ]
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
            archive.grow(services["large"], first_archive, have, size, end, log)
            have = size
            rounds: dict[str, list[dict[str, Any]]] = {"small": [], "large": []}
            for n in range(args.rounds):
                for name in ("small", "large") if n % 2 == 0 else ("large", "small"):
                    rounds[name].append(ingest_round(services[name], contexts[name], feed_ids[name]))
            step: dict[str, Any] = {
                "articles": size,
                "loaded": archive.loaded(services["large"], first_archive),
                "large_mb": archive.table_mb(services["large"]),
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
