"""CPU per feed of one poll batch, by what the feed answered: in this process, on PostgreSQL.

``run.py`` measures the whole service; this says where a worker's CPU goes per kind of feed of
the steady mix, so a change can be judged without the noise of eight processes on two cores:

    .venv/bin/python benchmarks/poll_costs.py [--feeds 1000] [--rounds 5] [--profile out.prof]
        [--only 304 --spy 304.txt]

Prints one JSON object: ``cpu_ms_per_feed`` for ``304``, ``unchanged`` (200, same body),
``new`` (200, 2 new items of 50) and ``mix`` (the steady-state mix the issue names: 70 / 20 /
10 %), the process CPU ``feeds_per_core_s`` that mix allows, and ``parse_ms`` for comparison (a
full parse of one 50-item feed by feedparser and by the lxml fast path). Needs PostgreSQL
(``FEEDWATCH_TEST_PG``). ``ingest`` is CPU per stored article when every item is new (and the
elapsed time per article, round trips to PostgreSQL included);
``delivery`` is CPU per alert delivered to the JSONL channel, by alerts per message; ``claim``
the CPU a feed of the tick's claim, which every poll pays once beside the above. With
``--spy``, py-spy samples the ``--only`` kind's polls or deliveries (``spy``: each function's
inclusive share of the samples that held the GIL). The farm runs as a child process and is stopped by pid.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
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
    finish_profile,
    insert_feeds,
    postgres_database,
    proc_cpu,
    py_spy,
)


def postgres_cpu(service: Any) -> float:
    """CPU seconds so far of the PostgreSQL backends serving this benchmark's database (its
    connection pool and the runner's own), read from /proc: other databases' work on the shared
    server (another benchmark, a test run) does not count. A backend that exits between two
    readings takes its CPU with it, so the pool is kept open throughout."""
    total = 0.0
    pids = service.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
    for (pid,) in pids:
        with contextlib.suppress(OSError):  # exited since the query
            total += proc_cpu(pid)
    return total


@contextlib.contextmanager
def sampled(path: str | None) -> Iterator[dict[str, Any]]:
    """py-spy over the block, 1,000 samples a second of this process holding the GIL, as
    collapsed stacks in ``path``; the dict yielded gets their summary (``finish_profile``).
    Nothing without a path. Unlike ``--profile`` (cProfile), sampling does not charge each
    Python call a fixed cost, which doubled the share of code made of many small calls (the
    schedule's) in round 32's profiles of a 304 poll. The process stops for each sample (whole
    stacks); its CPU time, which the figures are, does not run meanwhile."""
    summary: dict[str, Any] = {}
    if path is None:
        yield summary
        return
    spy = py_spy(os.getpid(), Path(path), "gil", rate=1000, pause=True)
    time.sleep(1.0)  # py-spy attaches; a process sleeping holds no GIL, so this is not sampled
    try:
        yield summary
    finally:
        spy.send_signal(signal.SIGINT)
        summary.update(finish_profile(spy, Path(path), top=40))


def checked(reports: list[Any]) -> list[Any]:
    """The reports, when no poll failed: a failing pipeline (a missing rules file, a bug) is
    cheap and would pass for a fast one."""
    failed = [r for r in reports if r.outcome == "error"]
    if failed:
        raise SystemExit(
            f"{len(failed)} of {len(reports)} polls failed, e.g. {failed[0].error_class}: {failed[0].error}"
        )
    return reports


def time_story_lookup(service: Any) -> dict[str, Any]:
    """The story lookup for the newest alert's signature, run eight times (psycopg prepares a
    statement after its fifth run on a connection, and PostgreSQL may then keep a generic plan
    for it), and the number of stories it searches."""
    from feedwatch import db, stories
    from feedwatch.models import StoryKeys
    from feedwatch.timeutil import utcnow

    with db.session_scope(service.settings) as session:
        conn = session.connection()
        row = conn.exec_driver_sql("SELECT id, minhash FROM alert ORDER BY id DESC LIMIT 1").first()
        if row is None:
            return {}
        keys = session.get(StoryKeys, int(row[0]))
        if keys is None:
            return {}
        sig = stories.Signature(list(row[1]), list(keys.band_keys))
        runs = []
        for _ in range(8):
            started = time.perf_counter()
            stories.find_story(session, sig, utcnow(), stories.StoryPolicy())
            runs.append(round((time.perf_counter() - started) * 1000, 2))
        stored = conn.exec_driver_sql("SELECT count(*) FROM storykeys").scalar()
    return {"ms_per_run": runs, "stories": stored}


def delivery_costs(service: Any, spy: str | None = None) -> dict[str, Any]:
    """CPU per delivered alert (the JSONL channel) when a deliver_alert message carries 1, 3, 25
    or 100 alerts: the ingest's pending alerts in four equal parts, one per size. With ``spy``,
    py-spy samples the messages of the size a worker sends (``alert_batch_size``) alone: an
    alert alone costs ~12x one of a hundred, so a profile of all four sizes is mostly theirs."""
    from feedwatch import alerts
    from feedwatch.channels import build_channels
    from feedwatch.timeutil import utcnow

    ids = [i for (i,) in service.execute("SELECT id FROM alert WHERE status = 'pending' ORDER BY id")]
    sizes = (1, 3, 25, 100)
    if spy and service.settings.alert_batch_size not in sizes:
        raise SystemExit(f"--spy samples messages of alert_batch_size, which is none of {sizes}")
    part, channels = len(ids) // len(sizes), build_channels(service.settings)
    costs: dict[str, float] = {}
    pg_costs: dict[str, float] = {}
    summary: dict[str, Any] = {}
    for k, size in enumerate(sizes):
        group = ids[k * part : (k + 1) * part]
        with sampled(spy if size == service.settings.alert_batch_size else None) as spied:
            started, pg0 = time.process_time(), postgres_cpu(service)
            for j in range(0, len(group), size):
                alerts.deliver_many(group[j : j + size], channels, service.settings, utcnow)
            cpu = time.process_time() - started
        summary.update(spied)
        costs[f"batch_{size}"] = round(cpu / max(len(group), 1) * 1000, 3)
        pg_costs[f"batch_{size}"] = round((postgres_cpu(service) - pg0) / max(len(group), 1) * 1000, 3)
    single = costs["batch_1"] or 1.0
    return {
        "alerts": len(sizes) * part,
        "cpu_ms_per_alert": costs,
        "postgres_cpu_ms_per_alert": pg_costs,
        **{f"ratio_batch_{size}": round(costs[f"batch_{size}"] / single, 3) for size in sizes[1:]},
        **({"spy_batch": service.settings.alert_batch_size, "spy": summary} if summary else {}),
    }


def claim_costs(service: Any, rounds: int) -> dict[str, Any]:
    """CPU a feed claimed by the tick's claim (``store.claim_due_feeds``, ``claim_batch`` a claim
    as the tick takes them; the farm is one origin, so no rounds), in this process and on
    PostgreSQL: every feed made due, then claimed until none is left, ``rounds`` times. A poll
    of the service pays one claim; ``cpu_ms_per_feed`` above leaves it out."""
    from feedwatch import db, store
    from feedwatch.timeutil import utcnow

    settings = service.settings
    batch, lease = settings.claim_batch, settings.claim_lease_seconds
    claimed, cpu, pg = 0, 0.0, 0.0
    for _ in range(rounds):
        service.execute("UPDATE feed SET next_check_at = now(), claimed_at = NULL, unreported_claims = 0")
        started, pg0 = time.process_time(), postgres_cpu(service)
        while True:
            with db.session_scope(settings) as session:
                got = store.claim_due_feeds(session, utcnow(), batch, lease)
            if not got:
                break
            claimed += len(got)
        cpu += time.process_time() - started
        pg += postgres_cpu(service) - pg0
    return {
        "feeds": claimed,
        "cpu_ms_per_feed": round(cpu / max(claimed, 1) * 1000, 4),
        "postgres_cpu_ms_per_feed": round(pg / max(claimed, 1) * 1000, 4),
    }


def statement_timings() -> dict[str, Any]:
    """Wall seconds per statement shape (its first 70 characters) from now until ``["stop"]``.

    ``store.copy_rows`` (a batch's new articles on PostgreSQL since round 38, its flagged articles'
    matches, alerts and story keys since round 39) runs its ``nextval`` (where it draws ids)
    and its ``COPY`` on the psycopg cursor, which SQLAlchemy's events do not see: it is timed
    whole (building its rows included), as ``COPY <table> (nextval + rows)``."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from feedwatch import store

    timings: dict[str, Any] = {"totals": {}, "stop": False}
    copy_rows = store.copy_rows

    def timed_copy_rows(session: Any, model: Any, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return copy_rows(session, model, *args)
        finally:
            if not timings["stop"]:
                shape = f"COPY {model.__tablename__} (nextval + rows)"
                timings["totals"][shape] = timings["totals"].get(shape, 0.0) + time.perf_counter() - started

    store.copy_rows = timed_copy_rows  # type: ignore[assignment]

    @event.listens_for(Engine, "before_cursor_execute")
    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["fw_started"] = time.perf_counter()

    @event.listens_for(Engine, "after_cursor_execute")
    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not timings["stop"]:
            shape = " ".join(statement.split())[:70]
            spent = time.perf_counter() - conn.info.pop("fw_started", time.perf_counter())
            timings["totals"][shape] = timings["totals"].get(shape, 0.0) + spent

    return timings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--feeds", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=5, help="polls of every feed per kind")
    parser.add_argument("--hosts", type=int, default=1, help="loopback hosts the poll feeds are spread over")
    parser.add_argument("--profile", help="write a cProfile (CPU time) of the measured polls here")
    parser.add_argument(
        "--statements", action="store_true", help="also: database wall time per statement during ingest"
    )
    parser.add_argument(
        "--spy",
        help="write py-spy's samples (GIL held, collapsed stacks) of the --only kind here",
    )
    parser.add_argument(
        "--only",
        choices=["304", "unchanged", "new", "ingest", "delivery"],
        help="profile this kind only (the deliveries are profiled only when named here)",
    )
    parser.add_argument(
        "--history",
        choices=["steady", "hourly"],
        default="steady",
        help="the poll feeds' histories: as run.py seeds them by default (a quiet feed's one run,"
        " bounds pinned), or as an hourly news feed holds it in service, bounds free (run.insert_feeds)",
    )
    args = parser.parse_args(argv)
    if args.spy and not args.only:
        parser.error("--spy needs --only")

    from feedwatch import pipeline
    from feedwatch.logs import configure_logging
    from feedwatch.parse import parse_feed
    from feedwatch.settings import Settings

    configure_logging(Settings(log_level="WARNING", log_format="json"))
    # 100 ingest feeds (run.py's quick size until round 29): a CPU an item needs no more.
    sizes = replace(QUICK, feeds=args.feeds, hosts=args.hosts, ingest_feeds=100)
    config = farm_config(sizes)
    with tempfile.TemporaryDirectory(prefix="fw-costs-") as tmp, farm_process(config, Path(tmp)) as (port, _):
        group = Group(name="poll", feeds=args.feeds, mix=sizes.mix, items=sizes.items, hosts=args.hosts)
        ingest = Group(name="ingest", feeds=sizes.ingest_feeds, mix={"new": 1}, items=50, new_items=50)
        with postgres_database() as db_url:
            service = Service(Path(tmp) / "svc", db_url, "memory://", 1)
            insert_feeds(service, group, port, 10.0, True, history=args.history)
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
            # As a worker does after its warm-up (workers/app.py): full collections then skip what
            # was loaded, and where one fell (a few ms) no longer moves a kind's figure; and the
            # worker's collector thresholds (pipeline.GC_THRESHOLDS).
            gc.collect()
            gc.freeze()
            gc.set_threshold(*pipeline.GC_THRESHOLDS)
            # CPU time, not wall time: waiting on PostgreSQL is not what this measures.
            profiler = cProfile.Profile(time.process_time) if args.profile else None
            costs: dict[str, float] = {}
            pg_costs: dict[str, float] = {}
            spy: dict[str, Any] = {}
            for kind, kind_ids in ids.items():
                if profiler and args.only in (None, kind):
                    profiler.enable()
                with sampled(args.spy if args.only == kind else None) as spied:
                    started, pg0, polls = time.process_time(), postgres_cpu(service), 0
                    for _ in range(args.rounds):
                        for k in range(0, len(kind_ids), size):
                            polls += len(checked(pipeline.poll_feeds(ctx, kind_ids[k : k + size])))
                    costs[kind] = (time.process_time() - started) / polls * 1000
                    pg_costs[kind] = (postgres_cpu(service) - pg0) / polls * 1000
                if profiler:
                    profiler.disable()
                spy.update(spied)
            # Every item new on every hit: CPU per stored article (parse, normalize, rules, store).

            def stored() -> int:
                return int(service.execute("SELECT count(*) FROM article")[0][0])

            if profiler and args.only in (None, "ingest"):
                profiler.enable()
            timings = statement_timings() if args.statements else None
            with sampled(args.spy if args.only == "ingest" else None) as spied:
                before, started, pg0 = stored(), time.process_time(), postgres_cpu(service)
                wall = time.perf_counter()
                for _ in range(args.rounds):
                    for k in range(0, len(ingest_ids), size):
                        checked(pipeline.poll_feeds(ctx, ingest_ids[k : k + size]))
            spy.update(spied)
            items = stored() - before
            per_item = (time.process_time() - started) / max(items, 1) * 1000
            wall_per_item = (time.perf_counter() - wall) / max(items, 1) * 1000
            pg_per_item = (postgres_cpu(service) - pg0) / max(items, 1) * 1000
            if timings is not None:
                timings["stop"] = True
            if profiler:
                profiler.disable()
            lookup = time_story_lookup(service) if args.statements else None
            if profiler and args.only == "delivery":
                profiler.enable()
            delivery = delivery_costs(service, args.spy if args.only == "delivery" else None)
            spy.update(delivery.pop("spy", {}))
            if profiler:
                profiler.disable()
                profiler.dump_stats(args.profile)
            claim = claim_costs(service, args.rounds)
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
        "history": args.history,
        "batch": size,
        "cpu_ms_per_feed": {**{k: round(v, 3) for k, v in costs.items()}, "mix": round(mix, 3)},
        "feeds_per_core_s": round(1000 / mix, 1),
        # PostgreSQL's CPU for the same polls (its server processes), per feed
        "postgres_cpu_ms_per_feed": {k: round(v, 3) for k, v in pg_costs.items()},
        "ingest": {
            "items": items,
            "cpu_ms_per_item": round(per_item, 4),
            "items_per_core_s": round(1000 / per_item),
            "postgres_cpu_ms_per_item": round(pg_per_item, 4),
            # elapsed: this process's CPU, PostgreSQL's, and the round trips between them
            "wall_ms_per_item": round(wall_per_item, 4),
        },
        "parse_ms": parse_ms,
        # CPU per alert delivered by deliver_many, by alerts per message (ratio: against one)
        "delivery": delivery,
        # the tick's claim of a feed, which every poll of the service pays once (not in the above)
        "claim": claim,
    }
    if spy:  # the samples' inclusive shares, for the kind named by --only
        result["spy"] = {"kind": args.only, **spy}
    if lookup:
        result["ingest"]["story_lookup"] = lookup
    if timings is not None:
        result["ingest"]["statements_ms_per_item"] = {
            k: round(v / max(items, 1) * 1000, 4)
            for k, v in sorted(timings["totals"].items(), key=lambda kv: -kv[1])[:12]
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
