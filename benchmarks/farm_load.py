"""The farm's CPU a request by how the requests arrive: at the bare loop's full speed, and held to
fixed rates, one request at a time or in bursts as a poll batch sends them.

    .venv/bin/python benchmarks/farm_load.py [--feeds 10000] [--seconds 8] [--rates 3500,2000]
        [--bursts 1,100] [--rounds 1]

The farm shares the two cores with whatever polls it, so the poll ratio's budget carries its
CPU: ``run.py`` reports it a request under the bare loop and under the service
(``farm_us_per_request``), and under the service it has read 0–25 % more (rounds 33 and 41).
This asks the farm the same steady mix (conditional GETs for its 304 feeds, 50 requests in
flight, keep-alive, one aiohttp session like ``run.py``'s floor) three ways: as fast as it
answers (``saturated``, the floor's own loop), and at each of ``--rates`` requests a second, the
requests released one at a time (burst 1) or ``burst`` at a time (a poll batch's fetch sends a
batch's requests together). Prints one JSON object: per way the requests a second, the farm's
CPU a request (best of ``--rounds``) and its ratio to the saturated figure in the same run. The
farm runs as a child process, stopped by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
from farm import Group, feed_etag, groups_from_config, raise_mmap_threshold
from run import FULL, bare_loop, farm_config, farm_process, farm_url, proc_cpu

IN_FLIGHT = 50


def paced(port: int, group: Group, seconds: float, rate: float, burst: int) -> tuple[int, float]:
    """``run.bare_loop`` held to ``rate``: requests over ``seconds``, ``IN_FLIGHT`` at most at a
    time, the n-th waiting until ``burst`` × (n // ``burst``) / ``rate`` seconds from the start.
    Returns the requests done and the seconds they took."""

    async def run() -> tuple[int, float]:
        done = 0
        start = time.monotonic()
        stop = start + seconds
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector()) as session:

            async def worker(offset: int) -> None:
                nonlocal done
                i = offset
                while time.monotonic() < stop:
                    wait = start + (done // burst) * burst / rate - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    index = i % group.feeds
                    etag = feed_etag(group, index) if group.kinds[index] == "304" else None
                    headers = {"If-None-Match": etag} if etag else {}
                    url = farm_url(port, group.name, index, group.hosts)
                    async with session.get(url, headers=headers) as response:
                        await response.read()
                    done += 1
                    i += IN_FLIGHT

            await asyncio.gather(*(worker(k) for k in range(IN_FLIGHT)))
        return done, time.monotonic() - start

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--feeds", type=int, default=FULL.feeds)
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds a way, a round")
    parser.add_argument("--rates", default="3500,2000", help="requests a second to hold, comma-separated")
    parser.add_argument("--bursts", default="1,100", help="requests released together, comma-separated")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",") if r]
    bursts = [int(b) for b in args.bursts.split(",") if b]
    if any(r <= 0 for r in rates) or any(b < 1 for b in bursts) or args.seconds <= 0 or args.rounds < 1:
        parser.error("rates and seconds must be positive, bursts and rounds at least 1")
    ways: list[tuple[str, float | None, int]] = [("saturated", None, 1)]
    ways += [(f"{r:g}/s, burst {b}", r, b) for r in rates for b in bursts]
    raise_mmap_threshold()  # as the floor's process does (run.py): a fresh one mmaps every read
    config = farm_config(replace(FULL, feeds=args.feeds))
    best: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="fw-farm-load-") as tmp, farm_process(config, Path(tmp)) as farm:
        port, proc = farm
        group = next(g for g in groups_from_config(config) if g.name == "poll")
        bare_loop(port, group, min(args.seconds, 2.0))  # connections opened, the farm warm
        for _ in range(args.rounds):
            for name, rate, burst in ways:
                cpu = proc_cpu(proc.pid)
                done, took = (
                    bare_loop(port, group, args.seconds)
                    if rate is None
                    else paced(port, group, args.seconds, rate, burst)
                )
                figures = {
                    "req_per_s": round(done / took, 1),
                    "farm_us_per_request": round((proc_cpu(proc.pid) - cpu) / max(done, 1) * 1e6, 1),
                }
                if name not in best or figures["farm_us_per_request"] < best[name]["farm_us_per_request"]:
                    best[name] = figures
    floor = best["saturated"]["farm_us_per_request"]
    for figures in best.values():
        figures["ratio_to_saturated"] = round(figures["farm_us_per_request"] / floor, 3) if floor else None
    print(json.dumps({"feeds": args.feeds, "in_flight": IN_FLIGHT, "seconds": args.seconds, "ways": best}))


if __name__ == "__main__":
    main()
