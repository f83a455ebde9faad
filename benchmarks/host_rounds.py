"""How many connections a deployment's polls open, with rounds and without: the real tick
(``pipeline.tick``: its claim, rounds and batches) on a simulated clock, over feeds spread on
origins of one to many feeds each.

A poll over a new TLS connection costs the fetching process ~0.8–1.0 ms more than one on a kept
connection (``tls_cost.py``, round 42): about twice what a whole poll of the steady mix costs
the machine. Connections are kept 15 s (``fetch.client.KEEPALIVE_TIMEOUT``) and a host whose
feeds fall due minutes apart finds none. Rounds (round 43, ``Settings.poll_round_share``) take
an origin's feeds that fall due soon with its due one, so that its feeds go out in one batch,
paced, on one connection::

    .venv/bin/python benchmarks/host_rounds.py [--hours 3] [--shares 0,0.05,0.1,0.2] [--seed 1]

The feeds (``--mix``, ``COUNTxFEEDS`` an origin, by default 200 origins of one feed, 50 of 3, 20
of 10, 5 of 30: 700 feeds on 275 origins, five in seven on an origin with others) each keep an interval
drawn from 5, 10, 15, 30 and 60 minutes, start at a random point of it, and after each poll fall
due again that interval ±10 % later (the schedule's jitter) or, while a poll is out, when the
claim's lease ends. A poll here is that write alone: no fetch. The tick runs every
``tick_seconds`` (0.5 s) of the simulated clock on a SQLite database in a temporary directory,
with the service's settings otherwise: per-host pacing 0.5 s apart, so a round holds 11 feeds of
an origin and an origin with more than 11 falling due within the minute is busy (none of its
feeds goes early; ``store.Rounds``).

Each batch goes to one of ``--processes`` (2) worker processes at random. A batch's feeds of one
origin share a connection (paced, its requests take turns on it); a process keeps a connection
``KEEPALIVE_TIMEOUT`` seconds, so an origin's next batch on that process within that time opens
none. Counted after the first simulated hour (``--warm-up``: the feeds' starting spread
settles): polls,
connections opened, their ratio, the polls taken early and how early (a share of the feed's
interval before its jitter), and against the run with rounds off (share 0): the polls and the connections as
ratios, and what the connections saved are worth at ``--handshake-us`` (900) µs each, a share
of a poll's ~``--poll-us`` (500) µs of machine.

Prints one JSON object. A model of a deployment: its origins' sizes are a guess (stated in
the output), the rest is the service's code.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import REPO  # also puts this checkout's src/ first on sys.path

START = datetime(2026, 12, 7, tzinfo=UTC)
INTERVALS_MIN = (5, 10, 15, 30, 60)
JITTER = 0.1
DEFAULT_MIX = "200x1,50x3,20x10,5x30"


def parse_mix(text: str) -> list[tuple[int, int]]:
    """``COUNTxFEEDS,…`` → [(origins, feeds each)]."""
    mix = []
    for part in text.split(","):
        count, _, size = part.partition("x")
        if not (count.isdigit() and size.isdigit()) or int(count) < 1 or int(size) < 1:
            raise ValueError(f"--mix: COUNTxFEEDS,… with positive numbers, not {part!r}")
        mix.append((int(count), int(size)))
    return mix


def simulate(
    share: float,
    mix: Sequence[tuple[int, int]],
    hours: float,
    warm_up_s: float,
    processes: int,
    seed: int,
    keepalives: Sequence[float] = (),
) -> dict[str, Any]:
    """One run of the tick over ``warm_up_s`` and then ``hours`` of simulated time (counted) with
    ``poll_round_share`` = ``share``; the connections also counted as if idle ones were kept each
    of ``keepalives`` seconds instead of ``KEEPALIVE_TIMEOUT``."""
    from sqlalchemy import bindparam, insert, update
    from sqlmodel import col, select

    from feedwatch import db, pipeline, store
    from feedwatch.fetch.client import KEEPALIVE_TIMEOUT, MAX_IDLE
    from feedwatch.models import Feed, origin_of
    from feedwatch.settings import Settings

    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="fw-rounds-") as tmp:
        settings = Settings(
            database_url=f"sqlite:///{Path(tmp) / 'rounds.db'}",
            poll_round_share=share,
            per_host_min_gap_seconds=0.5,
        )
        db.upgrade(settings)
        # Each feed: (url, its origin, its interval in seconds, its origin's size, when it is due).
        specs = []
        for count, size in mix:
            for o in range(count):
                for k in range(size):
                    url = f"https://o{size}-{o}.example/feed/{k}"
                    seconds = 60.0 * rng.choice(INTERVALS_MIN)
                    due = START + timedelta(seconds=rng.uniform(0, seconds))
                    origin = origin_of(url)
                    assert origin is not None  # an https URL has one
                    specs.append((url, origin, seconds, size, due))
        rows: list[dict[str, Any]] = [
            {
                "config_url": url,
                "url": url,
                "origin": origin,
                "next_check_at": due,
                "last_polled_at": due - timedelta(seconds=seconds),
                "created_at": START,
                "tags": [],
                "redirect_history": [],
                "poll_history": [],
            }
            for url, origin, seconds, _, due in specs
        ]
        with db.session_scope(settings) as session:
            session.execute(insert(Feed), rows)
            ids = dict(session.execute(select(col(Feed.url), col(Feed.id))).all())
            store.mark_rounds(session)  # as the sync of the configuration does
        feeds = db.get_engine(settings)
        clock = [START]
        batches: list[list[int]] = []
        ctx = pipeline.Context(
            settings, clock=lambda: clock[0], rng=random.Random(seed), publish_poll=batches.append
        )
        origin_by_id = {ids[url]: origin for url, origin, *_ in specs}
        interval_s = {ids[url]: seconds for url, _, seconds, *_ in specs}
        next_at = {ids[url]: due for url, *_, due in specs}
        size_of = {origin: size for _, origin, _, size, _ in specs}
        table = Feed.__table__  # type: ignore[attr-defined]
        written = (
            update(table)
            .where(table.c.id == bindparam("fid"))
            .values(next_check_at=bindparam("next"), last_polled_at=bindparam("last"), unreported_claims=0)
        )
        # By how long idle connections are kept: each process's connections, least recently used
        # first (origin → when last used), at most MAX_IDLE of them, as a multi handle keeps them.
        keeps = [KEEPALIVE_TIMEOUT, *(k for k in keepalives if k != KEEPALIVE_TIMEOUT)]
        kept = {k: [OrderedDict[str, float]() for _ in range(processes)] for k in keeps}
        opened = dict.fromkeys(keeps, 0)
        by_size = {size: [0, 0] for _, size in mix}  # feeds an origin → [polls, connections counted]
        earliness: list[float] = []
        for step in range(int((warm_up_s + hours * 3600) / settings.tick_seconds)):
            t = step * settings.tick_seconds
            now = START + timedelta(seconds=t)
            clock[0] = now
            batches.clear()
            pipeline.tick(ctx)
            if not batches:
                continue
            counted = t >= warm_up_s
            writes = []
            for batch in batches:
                process = rng.randrange(processes)
                for origin in {origin_by_id[f] for f in batch}:
                    for keep, pools in kept.items():
                        pool = pools[process]
                        if t - pool.pop(origin, -1e9) > keep and counted:
                            opened[keep] += 1
                            if keep == KEEPALIVE_TIMEOUT:
                                by_size[size_of[origin]][1] += 1
                        pool[origin] = t
                        while pool and (len(pool) > MAX_IDLE or t - next(iter(pool.values())) > keep):
                            pool.popitem(last=False)
                for feed_id in batch:
                    seconds = interval_s[feed_id]
                    if counted:
                        by_size[size_of[origin_by_id[feed_id]]][0] += 1
                        if next_at[feed_id] > now:
                            earliness.append((next_at[feed_id] - now).total_seconds() / seconds)
                    next_at[feed_id] = now + timedelta(seconds=seconds * (1 + rng.uniform(-JITTER, JITTER)))
                    writes.append({"fid": feed_id, "next": next_at[feed_id], "last": now})
            with feeds.begin() as conn:
                conn.execute(written, writes)
        db.dispose_engines()
    polls = sum(p for p, _ in by_size.values())
    return {
        "share": share,
        "polls": polls,
        "connections": opened[KEEPALIVE_TIMEOUT],
        "connections_a_poll": round(opened[KEEPALIVE_TIMEOUT] / polls, 3) if polls else None,
        **(
            {
                "connections_a_poll_by_keepalive": {
                    f"{k:g}": round(c / polls, 3) if polls else None for k, c in opened.items()
                }
            }
            if len(opened) > 1
            else {}
        ),
        "connections_a_poll_by_origin_size": {
            str(size): round(c / p, 3) if p else None for size, (p, c) in sorted(by_size.items())
        },
        "early_share": round(len(earliness) / polls, 3) if polls else None,
        "earliness_mean": round(statistics.fmean(earliness), 4) if earliness else 0.0,
        "earliness_max": round(max(earliness), 4) if earliness else 0.0,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "--hours", type=float, default=3.0, help="simulated hours counted, after one of warm-up"
    )
    parser.add_argument("--shares", default="0,0.05,0.1,0.2", help="poll_round_share values, 0 first")
    parser.add_argument("--mix", default=DEFAULT_MIX, help="origins: COUNTxFEEDS,…")
    parser.add_argument("--warm-up", type=float, default=60.0, help="simulated minutes before counting")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--handshake-us", type=float, default=900.0)
    parser.add_argument("--poll-us", type=float, default=500.0)
    parser.add_argument(
        "--keepalive",
        default="",
        help="also count connections as if idle ones were kept these seconds: 30,60,…",
    )
    args = parser.parse_args(argv)
    try:
        mix = parse_mix(args.mix)
        shares = [float(s) for s in args.shares.split(",")]
        keepalives = [float(k) for k in args.keepalive.split(",") if k]
    except ValueError as exc:
        parser.error(str(exc))
    if shares[0] != 0 or not all(0 <= s < 1 for s in shares):
        parser.error("--shares: 0 first, each in [0, 1)")
    if args.hours <= 0 or args.warm_up < 0 or args.processes < 1:
        parser.error("--hours > 0, --warm-up >= 0 and --processes >= 1")
    # The tick logs each claim at INFO; the figures are the output here.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if not all(k > 0 for k in keepalives):
        parser.error("--keepalive: seconds > 0")
    runs = [
        simulate(s, mix, args.hours, args.warm_up * 60, args.processes, args.seed, keepalives) for s in shares
    ]
    base = runs[0]
    for run in runs:
        run["polls_vs_off"] = round(run["polls"] / base["polls"], 4)
        run["connections_vs_off"] = round(run["connections"] / base["connections"], 3)
        saved = (base["connections"] - run["connections"]) / run["polls"]
        run["saved_us_a_poll"] = round(saved * args.handshake_us, 1)
        run["saved_share_of_a_poll"] = round(
            saved * args.handshake_us / (args.poll_us + base["connections_a_poll"] * args.handshake_us), 3
        )
    print(
        json.dumps(
            {
                "repo": str(REPO),
                "mix": args.mix,
                "feeds": sum(c * s for c, s in mix),
                "origins": sum(c for c, _ in mix),
                "hours_counted": args.hours,
                "warm_up_min": args.warm_up,
                "processes": args.processes,
                "runs": runs,
            }
        )
    )


if __name__ == "__main__":
    main()
