"""Days of a deployment's polls in an hour: the real service at an offered rate, step by step,
to show what grows with time and what the upkeep keeps flat.

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--rate 1000] [--feeds 10000] [--keep DIR]

``run.py`` measures the service from an empty database for a few minutes. An operator runs it
for months, and what wears a long-running service down grows slowly: dead row versions under
the tick's claim, the feed table's heap and indexes, plans made on tables of another size, the
articles stored. Where PostgreSQL's autovacuum is off (as on this project's machines) the
service's own upkeep stands in for it (``feedwatch.db_upkeep``, docs/operations.md); this is
where it is watched at work over many of its runs.

The real service (docker-compose.yml's workers and beat, Redis db 7, a scratch PostgreSQL
database) polls ``--feeds`` feeds of the farm's steady mix (70 % 304, 20 % unchanged, 10 % with
2 new items of 50) at ``--rate`` polls/s, each feed every ``feeds / rate`` seconds. 1,000
polls/s for 30 minutes is 1.8 million polls: 10,000 feeds polled every ten minutes for 30
hours. Every step (``--step``, 60 s) it records:

- ``polls_per_s``, the farm's count, and ``behind``: feeds due more than five seconds ago and
  not yet claimed at the step's end (the service not keeping up with the offer);
- ``cores`` by role, and the CPU a poll (``us_a_poll``) of the feeds worker, PostgreSQL and
  the farm, from the CPU seconds read (not from ``cores``, rounded to a hundredth: round 63).
  The machine's level moves within minutes; the farm's cost a poll moves with it alone (its
  work a poll is the same all run), so ``feeds_over_farm`` is the feeds worker's cost over the
  farm's (a bare loop timed in this process each minute read 26-87 ns a step while the
  service's costs held within 15 %: it measured its own luck at getting a core, and was taken
  out; round 62);
- ``latency``: due → delivered of ``--probes`` probe feeds falling due over the step (each a
  new flagged item, as ``run.py``'s latency phase), p50 / p95 / max;
- ``claim``: the tick's claim of up to ``claim_batch`` due feeds, run under ``EXPLAIN
  ANALYZE`` and rolled back: the rows it would claim, its buffers and milliseconds (what the
  dead index entries under it cost);
- ``feed_heap_mb``, ``feed_indexes_mb``, ``feed_dead_rows``, ``articles``, ``database_mb``;
- ``upkeeps``: each ``db.upkeep`` the feeds worker logged in the step, its seconds and what it
  vacuumed and analyzed;
- ``ticks``: the ticks each worker that consumes ``default`` ran in the step (``feeds``,
  ``alerts_worker``), and ``flagged``: the flagged items the feeds worker's polls found
  (``items``) and the poll batches they fell in (``batches``). Neither is a poll's own work, but
  both move the feeds worker's cost a poll: in round 70's soak the feeds worker took more of the
  ticks as the run went on, and the same flagged items fell into more batches (:func:`logged`);
- ``feeds_rss_mb``: the feeds worker's pool children, their resident memory at the step's end.

``drift`` divides each figure's median over the last third of the steps by the first third's
(the first step, the schedule's ramp, left out): a ratio in the same run, near 1 where nothing
grows. Prints one JSON object; ``--keep`` copies the logs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (
    FULL,
    Proc,
    RssSampler,
    Service,
    farm_config,
    farm_process,
    farm_stats,
    feed_ids,
    flush_redis,
    frames_of,
    insert_feeds,
    log,
    machine,
    postgres_database,
    probe_latencies,
    proc_field,
    py_spy,
    read_cpu,
    reschedule,
    role_of,
    schedule_due,
    wait_until,
    watch,
)

#: A feed counts as ``behind`` when it has been due this long and is still not claimed.
BEHIND_S = 5

#: The figures ``drift`` compares, each a path into a step's record.
DRIFTING = {
    "polls_per_s": ("polls_per_s",),
    "feeds_us_a_poll": ("us_a_poll", "feeds"),
    "postgres_us_a_poll": ("us_a_poll", "postgres"),
    "farm_us_a_poll": ("us_a_poll", "farm"),
    "feeds_over_farm": ("us_a_poll", "feeds_over_farm"),
    "feeds_kernel_us_a_poll": ("us_a_poll", "feeds_kernel"),
    "feeds_main_us_a_poll": ("us_a_poll", "feeds_main"),
    "latency_p95_s": ("latency", "p95_s"),
    "claim_buffers": ("claim", "buffers"),
    "claim_ms": ("claim", "ms"),
    "feed_heap_mb": ("feed_heap_mb",),
    "feed_indexes_mb": ("feed_indexes_mb",),
    "feeds_rss_mb": ("feeds_rss_mb",),
}


#: The roles whose CPU a poll a step records: the service's two that poll, and the farm.
COSTING = ("feeds", "postgres", "farm")

#: The workers that consume ``default``, where the beat sends the tick: a step counts each one's.
TICKING = ("feeds", "alerts_worker")


def us_a_poll(start: Any, end: Any, polls: int) -> dict[str, float | None]:
    """CPU µs a poll of each :data:`COSTING` role between two ``run.read_cpu`` readings, from
    their CPU seconds as read (``cores`` rounds to a hundredth of a core, which at 1,000 polls/s
    is 10 µs a poll: 7 % of PostgreSQL's, 2.5 % of the feeds worker's; round 63). The farm does
    the same work for every poll in every minute of a run, so its µs a poll moves with the
    machine's level alone: ``feeds_over_farm`` is the feeds worker's cost with that level taken
    out, as far as the two move alike (round 64's soak: not far). ``feeds_kernel`` is the part
    of the feeds worker's spent in the kernel (its sockets, pipes and page faults), and
    ``feeds_main`` the part of its main process (Celery's consumer), both in its ``feeds``."""
    if not polls:
        return {role: None for role in (*COSTING, "feeds_over_farm", "feeds_kernel", "feeds_main")}

    def cost(part: str, role: str) -> float:
        before, after = start.snap[part], end.snap[part]
        return float(after.get(role, 0.0) - before.get(role, 0.0)) * 1e6 / polls

    costs = {role: cost("roles", role) for role in COSTING}
    out: dict[str, float | None] = {role: round(value, 1) for role, value in costs.items()}
    out["feeds_over_farm"] = round(costs["feeds"] / costs["farm"], 3) if costs["farm"] else None
    out["feeds_kernel"] = round(cost("kernel", "feeds"), 1)
    out["feeds_main"] = round(cost("feeds", "main"), 1)
    return out


#: py-spy's samples a second in a profiled window (``--spy-steps``). The feeds worker held the
#: GIL ~0.5 s a second at 1,000 polls/s in round 64: ~7,800 samples a 60 s step.
SPY_RATE = 250


def spy_steps(steps: int, each: int) -> dict[str, range]:
    """The steps (0-based) of the two profiled windows: ``each`` steps after the first (the
    schedule's ramp) and the last ``each``; none where the run is too short to keep them apart."""
    if each < 1 or 2 * each + 1 > steps:
        return {}
    return {"first": range(1, 1 + each), "last": range(steps - each, steps)}


def spy_costs(raw: Path, polls: int) -> dict[str, dict[str, float]]:
    """Each function's µs a poll holding the GIL in one window's py-spy samples (:data:`SPY_RATE`
    a second): ``inclusive`` counts a sample once for every function on its stack, ``self``
    for the innermost only. Not CPU time: a process preempted while it holds the GIL still
    counts (round 64: 1.16–1.37× the CPU /proc counts), so these are the base of the shares."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in raw.read_text().splitlines() if raw.exists() else []:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or not (frames := frames_of(stack)):
            continue
        inclusive.update(dict.fromkeys(set(frames), int(count)))
        own[frames[-1]] += int(count)
    us = 1e6 / SPY_RATE / max(polls, 1)
    return {name: {"inclusive": inclusive[name] * us, "self": own[name] * us} for name in inclusive}


def spy_drift(windows: dict[str, dict[str, Any]], top: int = 30) -> dict[str, Any]:
    """The functions whose share of the window's samples (inclusive) moved most from the first
    window to the last, the largest moves first, each with its share (``pct``, ``self_pct``)
    and its µs a poll holding the GIL (``us``, :func:`spy_costs`) in both. Shares, not µs: in
    round 64's first soak with a profile the farm's cost a poll fell 31 % between the windows,
    and every function's µs with it."""
    figures: dict[str, dict[str, dict[str, float]]] = {}  # window → function → figure
    for window in ("first", "last"):
        costs = windows[window].pop("costs")
        total = sum(c["self"] for c in costs.values()) or 1.0
        figures[window] = {
            name: {
                "pct": 100 * c["inclusive"] / total,
                "self_pct": 100 * c["self"] / total,
                "us": c["inclusive"],
            }
            for name, c in costs.items()
        }
    absent = dict.fromkeys(("pct", "self_pct", "us"), 0.0)

    def figure(window: str, name: str) -> dict[str, float]:
        return figures[window].get(name, absent)

    names = set(figures["first"]) | set(figures["last"])
    moved = sorted(names, key=lambda n: -abs(figure("last", n)["pct"] - figure("first", n)["pct"]))
    return {
        name: {
            f"{key}_{window}": round(figure(window, name)[key], 2)
            for key in ("pct", "self_pct", "us")
            for window in ("first", "last")
        }
        for name in moved[:top]
    }


def claim(service: Service) -> dict[str, float]:
    """The tick's claim (``store.due_claim``, the statement the tick runs) run now under
    ``EXPLAIN ANALYZE`` and rolled back: the rows it would claim, the buffers it touched, its
    milliseconds. What the dead index entries under its read cost, and, until round 62, the
    whole table it read to find the rows it had chosen. A custom plan, made for the values; the
    tick's connection prepares the statement and mostly runs its generic plan, the same plan
    for the claim's form since round 62 (not for the old one: docs/performance-history.md)."""
    from feedwatch import store
    from feedwatch.timeutil import utcnow

    settings, now = service.settings, utcnow()
    statement = store.due_claim("postgresql", now, settings.claim_batch, settings.claim_lease_seconds)
    with service.engine.connect() as conn:
        compiled = statement.compile(dialect=conn.dialect)
        sql = f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {compiled}"
        plan = conn.exec_driver_sql(sql, compiled.params).scalar_one()
        conn.rollback()
    plan = plan if isinstance(plan, list) else json.loads(plan)
    top = plan[0]["Plan"]
    return {
        "rows": int(top["Actual Rows"]),
        "buffers": int(top["Shared Hit Blocks"]) + int(top["Shared Read Blocks"]),
        "ms": round(float(plan[0]["Execution Time"]), 3),
    }


def tables(service: Service) -> dict[str, Any]:
    """The feed table's size and dead rows, the articles stored (the highest article id: a
    count would read the table each minute; it runs ahead of the count only by the ids a
    ``COPY`` that lost a race drew and left unused), the database's size."""
    ((heap, indexes, dead, articles, database),) = service.execute(
        "SELECT pg_relation_size('feed'), pg_indexes_size('feed'),"
        " (SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'feed'),"
        " (SELECT coalesce(max(id), 0) FROM article), pg_database_size(current_database())"
    )
    mb = 1024 * 1024
    return {
        "feed_heap_mb": round(heap / mb, 2),
        "feed_indexes_mb": round(indexes / mb, 2),
        "feed_dead_rows": int(dead or 0),
        "articles": int(articles),
        "database_mb": round(database / mb, 1),
    }


def behind(service: Service) -> int:
    ((n,),) = service.execute(
        "SELECT count(*) FROM feed WHERE enabled AND claimed_at IS NULL"
        f" AND next_check_at < now() - interval '{BEHIND_S} seconds'"
    )
    return int(n)


def logged(log_path: Path, offset: int) -> tuple[dict[str, Any], int]:
    """What a worker logged after ``offset`` (JSON logs), and the new offset: its ``db.upkeep``
    runs (``upkeeps``), the ticks it ran (``ticks``: both workers consume ``default``, where the
    beat sends them, and which of the two takes them moves over a run: round 70), and its polls'
    flagged items (``flagged.items``) with the poll tasks they fell in (``flagged.batches``: each
    such batch pays the alert path's fixed costs once, a story lookup and a message of alerts among
    them). A batch whose lines fall on both sides of a step counts in both. Only whole lines are
    read: a line the worker is still writing is read with the next step."""
    with log_path.open("rb") as fh:
        fh.seek(offset)
        text = fh.read()
    text = text[: text.rfind(b"\n") + 1]
    found: dict[str, Any] = {"upkeeps": [], "ticks": 0}
    flagged, batches = 0, set()
    for line in text.splitlines():
        if not any(event in line for event in (b'"db.upkeep"', b'"tick"', b'"feed.polled"')):
            continue
        with contextlib.suppress(ValueError):
            entry = json.loads(line[line.index(b"{") :])
            event = entry.get("event")
            if event == "db.upkeep":
                keys = ("seconds", "vacuumed", "analyzed", "left", "story_keys_pruned")
                found["upkeeps"].append({k: entry[k] for k in keys if k in entry})
            elif event == "tick":
                found["ticks"] += 1
            elif event == "feed.polled" and entry.get("flagged"):
                flagged += entry["flagged"]
                batches.add(entry.get("task_id"))
    found["flagged"] = {"items": flagged, "batches": len(batches)}
    return found, offset + len(text)


def children_rss_mb(leader: Proc) -> list[float]:
    """The resident memory of a worker's pool children now (its main process left out)."""
    sizes = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != leader.pid:
            with contextlib.suppress(OSError, ValueError):
                if os.getpgid(int(entry.name)) == leader.pid:
                    sizes.append(round(proc_field(entry / "status", "VmRSS") / 1024, 1))
    return sorted(sizes)


def pick(step: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = step
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, int | float) else None


def drift(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Each :data:`DRIFTING` figure's median over the last third of the steps ÷ the first third's
    (the first step left out: the schedule's ramp). None where a third holds no value."""
    measured = steps[1:] if len(steps) > 3 else steps
    third = max(1, len(measured) // 3)
    out: dict[str, Any] = {}
    for name, path in DRIFTING.items():
        first = [v for s in measured[:third] if (v := pick(s, path)) is not None]
        last = [v for s in measured[-third:] if (v := pick(s, path)) is not None]
        if first and last:
            a, b = statistics.median(first), statistics.median(last)
            out[name] = {"first": round(a, 3), "last": round(b, 3), "ratio": round(b / a, 3) if a else None}
        else:
            out[name] = None
    return out


def summary(steps: list[dict[str, Any]], polls: int, feeds: int) -> dict[str, Any]:
    runs = [u for s in steps for u in s["upkeeps"]]
    seconds = [u["seconds"] for u in runs if "seconds" in u]
    vacuumed = Counter(name for u in runs for name in u.get("vacuumed", ()))
    p95 = [v for s in steps if (v := pick(s, ("latency", "p95_s"))) is not None]
    return {
        "polls": polls,
        # The same polls of a deployment whose feeds are polled every ten minutes.
        "hours_of_feeds_every_10_min": round(polls / (feeds / 600) / 3600, 1),
        "articles": steps[-1]["articles"] if steps else 0,
        "latency_p95_s_max": max(p95, default=None),
        "behind_max": max((s["behind"] for s in steps), default=0),
        "upkeep": {
            "runs": len(runs),
            "seconds_min": min(seconds, default=None),
            "seconds_median": round(statistics.median(seconds), 3) if seconds else None,
            "seconds_max": max(seconds, default=None),
            "vacuumed_runs_by_table": dict(sorted(vacuumed.items())),
        },
    }


def soak(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    sizes = replace(FULL, feeds=args.feeds, rate=args.rate, probes=args.probes * args.steps)
    config = farm_config(sizes)
    for unused in ("ingest", "probe_idle", "sqlite"):
        config["groups"].pop(unused)
    from farm import groups_from_config

    groups = {g.name: g for g in groups_from_config(config)}
    sampler = RssSampler()
    steps: list[dict[str, Any]] = []
    with farm_process(config, workdir) as (port, _), postgres_database() as db_url:
        service = Service(workdir / "pg", db_url, flush_redis(), sizes.concurrency, migrate=False)
        try:
            workers = service.start_workers()
            service.migrate()
            interval_min = args.feeds / args.rate / 60
            insert_feeds(
                service, groups["poll"], port, interval_min, True, history=sizes.history, pinned=True
            )
            insert_feeds(service, groups["probe"], port, 24 * 60, True, due_in=86_400)
            service.wait_ready(workers)
            service.start_beat()
            warm = wait_until(
                lambda: farm_stats(port)["poll"]["feeds_hit"] == args.feeds,
                max(120, args.feeds / 50),  # 10,000 feeds took 18-20 s here
                "every poll feed polled once",
                service,
                sampler,
            )
            log(f"soak: every feed polled once in {warm:.1f}s; offering {args.rate:g} polls/s")
            reschedule(service, "poll", args.feeds / args.rate, sampler, rate=args.rate)
            probes = feed_ids(service, "probe")
            logs = {p: p.log_path.stat().st_size for p in service.procs if role_of(p) in TICKING}
            feeds_log = next(p for p in logs if role_of(p) == "feeds")
            pending: dict[int, Any] = {}
            windows = spy_steps(args.steps, args.spy_steps)
            spied: dict[str, dict[str, Any]] = {}
            for n in range(args.steps):
                due = schedule_due(service, probes[n * args.probes : (n + 1) * args.probes], args.step)
                hits, cpu = farm_stats(port)["poll"]["hits"], read_cpu(service)
                window = next((w for w, ns in windows.items() if n in ns), None)
                if window and n == windows[window][0]:
                    raw = workdir / f"spy-{window}.txt"
                    spy = py_spy(feeds_log.pid, raw, "gil", SPY_RATE, subprocesses=True)
                    spied[window] = {"steps": [n + 1, windows[window][-1] + 1], "raw": raw.name}
                    spy_start = (hits, cpu)
                watch(service, sampler, args.step)
                end_hits, end_cpu = farm_stats(port)["poll"]["hits"], read_cpu(service)
                if window and n == windows[window][-1]:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(60)
                    spied_polls = end_hits - spy_start[0]
                    functions = spy_costs(raw, spied_polls)
                    spied[window].update(
                        polls=spied_polls,
                        gil_us_a_poll=round(sum(c["self"] for c in functions.values()), 1),
                        us_a_poll=us_a_poll(spy_start[1], end_cpu, spied_polls),
                        costs=functions,
                    )
                cores, idle, seconds = end_cpu.since(cpu)
                rate = (end_hits - hits) / seconds
                seen = {}
                for proc, offset in logs.items():
                    seen[role_of(proc)], logs[proc] = logged(proc.log_path, offset)
                costs = us_a_poll(cpu, end_cpu, end_hits - hits)
                step: dict[str, Any] = {
                    "step": n + 1,
                    "polls_per_s": round(rate, 1),
                    "behind": behind(service),
                    "cores": cores,
                    "idle_cores": idle,
                    "us_a_poll": costs,
                    "claim": claim(service),
                    **tables(service),
                    "upkeeps": seen["feeds"]["upkeeps"],
                    "ticks": {role: seen[role]["ticks"] for role in TICKING},
                    "flagged": seen["feeds"]["flagged"],
                    "feeds_rss_mb": max(children_rss_mb(feeds_log), default=None),
                }
                if pending:  # the last step's probes: all due a step ago, delivered by now
                    steps[-1]["latency"] = probe_latencies(service, pending, sampler)
                steps.append(step)
                pending = due
                log(f"soak: step {json.dumps(step)}")
            if pending:
                steps[-1]["latency"] = probe_latencies(service, pending, sampler)
            polls = farm_stats(port)["poll"]["hits"]
        finally:
            service.stop()
    if len(spied) == 2:
        spied["moved"] = spy_drift(spied)
    return {
        "sizes": {"feeds": args.feeds, "rate": args.rate, "steps": args.steps, "step_s": args.step},
        "upkeep_seconds": service.settings.db_upkeep_seconds,
        "machine": machine(),
        "summary": summary(steps, polls, args.feeds),
        "drift": drift(steps),
        "steps": steps,
        "memory": sampler.report(),
        **({"spy": spied} if spied else {}),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30, help="how long to offer the load (default 30)")
    parser.add_argument("--step", type=float, default=60, help="seconds a recorded step (default 60)")
    parser.add_argument("--rate", type=float, default=1000, help="offered polls/s (default 1,000)")
    parser.add_argument("--feeds", type=int, default=10_000, help="poll feeds, steady mix (default 10,000)")
    parser.add_argument("--probes", type=int, default=60, help="latency probes a step (default 60)")
    parser.add_argument(
        "--upkeep-seconds",
        type=float,
        help="the service's FEEDWATCH_DB_UPKEEP_SECONDS (default 60; 0: none, to see what it keeps flat)",
    )
    parser.add_argument("--keep", help="copy the work directory (the service's logs) here")
    parser.add_argument(
        "--spy-steps",
        type=int,
        default=0,
        help="py-spy the feeds worker over this many steps after the first and over the last as many;"
        " `spy` gives each function's CPU a poll in both (default 0: no profile)",
    )
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.step <= 0 or args.rate <= 0 or args.feeds < 1 or args.probes < 1:
        parser.error("--minutes, --step, --rate, --feeds and --probes: more than 0")
    args.steps = max(1, round(args.minutes * 60 / args.step))
    if args.upkeep_seconds is not None:  # the Service passes the runner's FEEDWATCH_* on
        os.environ["FEEDWATCH_DB_UPKEEP_SECONDS"] = f"{args.upkeep_seconds:g}"
    from feedwatch.logs import configure_logging
    from feedwatch.settings import Settings

    configure_logging(Settings(log_level="WARNING", log_format="console"))  # stdout holds the JSON only
    # Stopped by SIGTERM (or SIGINT, which a shell leaves ignored in a job it started in the
    # background), it stops the service, drops its database and copies the logs on its way out.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda number, _: sys.exit(128 + number))
    with tempfile.TemporaryDirectory(prefix="fw-soak-") as tmp:
        try:
            result = soak(args, Path(tmp))
        finally:
            if args.keep:
                shutil.copytree(tmp, args.keep, dirs_exist_ok=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
