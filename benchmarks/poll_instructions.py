"""Instructions a feeds worker executes per poll, by what the feed answered: counted, not timed.

``poll_costs.py`` times a poll's CPU, and on these machines its figures move by a third with the
hour: a change worth 2 % of a poll is lost in them (rounds 19 and 32 in
docs/performance-history.md). This counts the instructions instead, under valgrind's callgrind,
which gives the same count for the same work whatever else the machine is doing:

    .venv/bin/python benchmarks/poll_instructions.py [--kinds 304,unchanged,new,ingest,real]
        [--feeds 100] [--rounds 10]

For each kind it runs a child process under callgrind twice: both set up the same feeds (a
farm of ``--feeds`` feeds of that kind, a fresh PostgreSQL database, every feed polled once) and
then poll every feed 1 and ``1 + --rounds`` times through ``pipeline.poll_feeds`` in batches as a
worker does; the difference between the two counts, divided by the extra polls, is what one poll
executes, setup excluded. Only this process's own instructions are counted: not the kernel's
in its system calls, and not the farm's or PostgreSQL's, which run outside valgrind
(``poll_costs.py`` reports PostgreSQL's CPU). Prints one JSON object: per kind the
instructions a poll (``minstr_per_poll``, millions), where polls stored articles the articles a
poll and the instructions an article (``kinstr_per_item``, thousands), the steady mix's weighted
sum and each run's total; ``PYTHONHASHSEED`` is fixed so both runs hash alike. The two runs of a kind go side
by side; a kind takes 3–4 minutes on two cores (valgrind runs Python ~50× slower, and each run
sets up anew). Needs valgrind and PostgreSQL (``FEEDWATCH_TEST_PG``).

Repeatability: three runs at the default sizes counted a 304 at 0.806 / 0.809 / 0.815 M
instructions (1.2 % apart; the setup alone varies by ~20 M, as the waits on the network and on
PostgreSQL loop a varying number of times). The figure depends on the sizes, since a feed's
later polls cost other than its first ones (0.76–0.86 M a 304 at 2–6 extra rounds): compare
two checkouts at the same sizes. At the default 100 feeds every feed's URL stays in yarl's
cache of 128 parsed URLs, where a deployment's thousands of feeds miss it: with ``--feeds 400
--rounds 4`` a 304 counted 0.5669 M with yarl's parse of each URL and 0.5231 M with round 57's
check of a plain URL, at 100 feeds 0.5485 and 0.5501 (docs/performance-history.md, round 57).

Compare two checkouts by running each one's copy of this script (``PYTHONPATH=<tree>/src``);
what it counts does not see cache misses or PostgreSQL, so a change it shows must still be
seen in ``run.py`` to count for the issue's ratios.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from farm import Group, real_bodies
from poll_costs import checked
from run import QUICK, REAL_FEEDS, Service, farm_config, farm_process, insert_feeds, postgres_database

KINDS = ("304", "unchanged", "new", "ingest", "real")
#: What the steady mix (``--kinds`` by default) is made of. The other two are the ingest phases'
#: feeds, every item new on every poll: ``ingest`` the farm's 50-item feeds, ``real`` the shared
#: corpus's real feeds (``run.py``'s ``ingest_real``; ``--feeds`` of them, the files in turn).
MIX_KINDS = ("304", "unchanged", "new")


def group_spec(kind: str) -> dict[str, Any]:
    """The farm group one kind's feeds come from, without its size: ``ingest`` and ``real`` are
    ``run.py``'s groups of those phases; the mix's kinds its poll group's items, one kind each."""
    if kind in ("ingest", "real"):
        spec = farm_config(QUICK, real=True)["groups"][kind]
        return {k: v for k, v in spec.items() if k != "feeds"}
    return {"mix": {kind: 1.0}, "items": QUICK.items, "new_items": QUICK.new_items}


def inner(kind: str, feeds: int, rounds: int, items_out: Path, history: str = "steady") -> None:
    """The measured child: set up ``feeds`` feeds of ``kind``, poll each once, then ``rounds``
    more times (what the parent's two runs differ by); the articles stored go to ``items_out``."""
    from feedwatch import pipeline
    from feedwatch.logs import configure_logging
    from feedwatch.settings import Settings

    configure_logging(Settings(log_level="WARNING", log_format="json"))
    spec = {"feeds": feeds, **group_spec(kind)}
    group = Group(name="poll", **spec)
    config = {"groups": {"poll": spec}}
    with (
        tempfile.TemporaryDirectory(prefix="fw-instr-") as tmp,
        farm_process(config, Path(tmp)) as (port, _),
        postgres_database() as db_url,
    ):
        service = Service(Path(tmp) / "svc", db_url, "memory://", 1)
        insert_feeds(service, group, port, 10.0, True, history=history)
        ctx = pipeline.Context(settings=service.settings)
        size = service.settings.poll_batch_size
        ids = [int(row[0]) for row in service.execute("SELECT id FROM feed ORDER BY id")]
        gc.collect()
        gc.freeze()
        gc.set_threshold(*pipeline.GC_THRESHOLDS)
        for _ in range(1 + rounds):  # the first: as a worker's first poll of these feeds
            for k in range(0, len(ids), size):
                checked(pipeline.poll_feeds(ctx, ids[k : k + size]))
        items_out.write_text(str(service.execute("SELECT count(*) FROM article")[0][0]))
        service.stop()


def count(kind: str, feeds: int, rounds: int, out: Path, history: str = "steady") -> tuple[int, int]:
    """Instructions of one child run under callgrind, and the articles it stored."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        "--trace-children=no",
        sys.executable,
        __file__,
        "--inner",
        kind,
        "--feeds",
        str(feeds),
        "--rounds",
        str(rounds),
        "--items-out",
        str(out.with_suffix(".items")),
        "--history",
        history,
    ]
    child = subprocess.run(command, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if child.returncode:
        tail = child.stderr.decode(errors="replace")[-3000:]
        raise RuntimeError(f"the {kind} run under callgrind failed ({child.returncode}):\n{tail}")
    totals = re.search(rb"^(?:totals|summary): (\d+)", out.read_bytes(), re.MULTILINE)
    if totals is None:
        raise RuntimeError(f"no totals in {out}")
    return int(totals.group(1)), int(out.with_suffix(".items").read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "--kinds", default=",".join(MIX_KINDS), help="comma-separated: 304, unchanged, new, ingest, real"
    )
    parser.add_argument("--feeds", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10, help="extra polls of every feed in the second run")
    parser.add_argument("--inner", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--items-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--history",
        choices=("steady", "hourly"),
        default="steady",
        help="the feeds' seeded histories, as poll_costs.py's --history (hourly: bounds free)",
    )
    args = parser.parse_args(argv)
    if args.inner:
        inner(args.inner, args.feeds, args.rounds, args.items_out, args.history)
        return
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        parser.error(f"unknown kinds: {', '.join(unknown)}")
    if "real" in kinds and not real_bodies(str(REAL_FEEDS)):
        parser.error(f"the real kind needs the shared corpus's feeds in {REAL_FEEDS}")
    result: dict[str, Any] = {
        "feeds": args.feeds,
        "rounds": args.rounds,
        "history": args.history,
        "kinds": {},
    }
    with tempfile.TemporaryDirectory(prefix="fw-callgrind-") as tmp:
        for kind in kinds:
            with ThreadPoolExecutor(2) as pool:  # the two runs side by side: counts, not times
                runs = [
                    pool.submit(
                        count, kind, args.feeds, rounds, Path(tmp) / f"{kind}.{rounds}.out", args.history
                    )
                    for rounds in (0, args.rounds)
                ]
                (base, base_items), (more, more_items) = (run.result() for run in runs)
            per_poll = (more - base) / (args.rounds * args.feeds)
            result["kinds"][kind] = {
                "minstr_per_poll": round(per_poll / 1e6, 4),
                "total_minstr": [round(base / 1e6, 1), round(more / 1e6, 1)],
            }
            if more_items > base_items:  # an article stored: its share of the polls' instructions
                items = more_items - base_items
                result["kinds"][kind]["items_per_poll"] = round(items / (args.rounds * args.feeds), 2)
                result["kinds"][kind]["kinstr_per_item"] = round((more - base) / items / 1e3, 1)
            print(f"[instructions] {kind}: {result['kinds'][kind]}", file=sys.stderr, flush=True)
    shares = QUICK.mix
    if all(k in result["kinds"] for k in shares):
        result["mix_minstr_per_poll"] = round(
            sum(shares[k] * result["kinds"][k]["minstr_per_poll"] for k in shares), 4
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
