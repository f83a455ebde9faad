"""The farm's CPU a request by how the requests arrive: at the bare loop's full speed, and held to
fixed rates, one request at a time or in bursts as a poll batch sends them.

    .venv/bin/python benchmarks/farm_load.py [--feeds 10000] [--seconds 8] [--rates 3500,2000]
        [--bursts 1,100] [--rounds 1]

The farm shares the two cores with whatever polls it, so the poll ratio's budget carries its
CPU: ``run.py`` reports it a request under the bare loop and under the service
(``farm_us_per_request``), and under the service it has read 0–25 % more (rounds 33 and 41).
This asks the farm the same steady mix with ``run.py``'s floor loop (``run.bare_loop``:
conditional GETs for its 304 feeds, 50 requests in flight, keep-alive) three ways: as fast as
it answers (``saturated``, the floor itself), and held to each of ``--rates`` requests a second,
the requests released one at a time (burst 1) or ``burst`` at a time (a poll batch's fetch
sends a batch's requests together). Prints one JSON object: per way the requests a second, the farm's
CPU a request (best of ``--rounds``) and its ratio to the saturated figure in the same run. The
farm runs as a child process, stopped by its pid.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from farm import groups_from_config, raise_mmap_threshold
from run import FULL, bare_loop, farm_config, farm_process, proc_cpu

IN_FLIGHT = 50


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
                done, took = bare_loop(port, group, args.seconds, IN_FLIGHT, rate=rate, burst=burst)
                figures: dict[str, Any] = {
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
