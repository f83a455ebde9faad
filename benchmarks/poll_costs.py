"""CPU per feed of one poll batch, by what the feed answered: in this process, on PostgreSQL.

``run.py`` measures the whole service; this says where a worker's CPU goes per kind of feed of
the steady mix, so a change can be judged without the noise of eight processes on two cores:

    .venv/bin/python benchmarks/poll_costs.py [--feeds 1000] [--rounds 5] [--profile out.prof]

Prints one JSON object: ``cpu_ms_per_feed`` for ``304``, ``unchanged`` (200, same body),
``new`` (200, 2 new items of 50) and ``mix`` (the steady-state mix the issue names: 70 / 20 /
10 %), the process CPU ``feeds_per_core_s`` that mix allows, and ``parse_ms`` for comparison (a
full parse of one 50-item feed by feedparser and by the lxml fast path). Needs PostgreSQL
(``FEEDWATCH_TEST_PG``). ``ingest`` is CPU per stored article when every item is new. The
farm runs as a child process and is stopped by pid.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from farm import Group, constant_body
from run import (
    QUICK,
    Service,
    farm_config,
    farm_process,
    farm_url,
    insert_feeds,
    postgres_database,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--feeds", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=5, help="polls of every feed per kind")
    parser.add_argument("--profile", help="write a cProfile (CPU time) of the measured polls here")
    parser.add_argument(
        "--only", choices=["304", "unchanged", "new", "ingest"], help="profile this kind only"
    )
    args = parser.parse_args(argv)

    from feedwatch import pipeline
    from feedwatch.logs import configure_logging
    from feedwatch.parse import parse_feed
    from feedwatch.settings import Settings

    configure_logging(Settings(log_level="WARNING", log_format="json"))
    sizes = QUICK
    sizes.feeds = args.feeds
    config = farm_config(sizes)
    with tempfile.TemporaryDirectory(prefix="fw-costs-") as tmp, farm_process(config, Path(tmp)) as (port, _):
        group = Group(name="poll", feeds=args.feeds, mix=sizes.mix, items=sizes.items)
        ingest = Group(name="ingest", feeds=sizes.ingest_feeds, mix={"new": 1}, items=50, new_items=50)
        with postgres_database() as db_url:
            service = Service(Path(tmp) / "svc", db_url, "memory://", 1)
            insert_feeds(service, group, port, 10.0, True)
            insert_feeds(service, ingest, port, 10.0, True)
            ctx = pipeline.Context(settings=service.settings)
            size = service.settings.poll_batch_size
            ids: dict[str, list[int]] = {"304": [], "unchanged": [], "new": []}
            ingest_ids: list[int] = []
            for fid, url in service.execute("SELECT id, url FROM feed ORDER BY id"):
                if "/ingest/" in url:
                    ingest_ids.append(fid)
                else:
                    ids[group.kinds[int(url.rsplit("/", 1)[1].split(".")[0])]].append(fid)
            everything = sorted(i for kind in ids.values() for i in kind)
            for k in range(0, len(everything), size):  # first poll: the new feeds store 50 items
                pipeline.poll_feeds(ctx, everything[k : k + size])
                # CPU time, not wall time: waiting on PostgreSQL is not what this measures.
            profiler = cProfile.Profile(time.process_time) if args.profile else None
            costs: dict[str, float] = {}
            for kind, kind_ids in ids.items():
                if profiler and args.only in (None, kind):
                    profiler.enable()
                started, polls = time.process_time(), 0
                for _ in range(args.rounds):
                    for k in range(0, len(kind_ids), size):
                        polls += len(pipeline.poll_feeds(ctx, kind_ids[k : k + size]))
                costs[kind] = (time.process_time() - started) / polls * 1000
                if profiler:
                    profiler.disable()
            # Every item new on every hit: CPU per stored article (parse, normalize, rules, store).
            stored = lambda: int(service.execute("SELECT count(*) FROM article")[0][0])  # noqa: E731
            if profiler and args.only in (None, "ingest"):
                profiler.enable()
            before, started = stored(), time.process_time()
            for _ in range(args.rounds):
                for k in range(0, len(ingest_ids), size):
                    pipeline.poll_feeds(ctx, ingest_ids[k : k + size])
            items = stored() - before
            per_item = (time.process_time() - started) / max(items, 1) * 1000
            if profiler:
                profiler.disable()
                profiler.dump_stats(args.profile)
            service.stop()
        body = constant_body(group, 0, port)
        parse_ms: dict[str, float] = {}
        for fast in (False, True):
            started = time.process_time()
            for _ in range(30):
                parse_feed(
                    body,
                    headers={"content-type": "application/rss+xml"},
                    url=farm_url(port, "poll", 0),
                    fast=fast,
                )
            parse_ms["fast_path" if fast else "feedparser"] = round(
                (time.process_time() - started) / 30 * 1000, 3
            )
    mix = sum(sizes.mix[kind] * cost for kind, cost in costs.items())
    result: dict[str, Any] = {
        "feeds": args.feeds,
        "rounds": args.rounds,
        "batch": size,
        "cpu_ms_per_feed": {**{k: round(v, 3) for k, v in costs.items()}, "mix": round(mix, 3)},
        "feeds_per_core_s": round(1000 / mix, 1),
        "ingest": {
            "items": items,
            "cpu_ms_per_item": round(per_item, 4),
            "items_per_core_s": round(1000 / per_item),
        },
        "parse_ms": parse_ms,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
