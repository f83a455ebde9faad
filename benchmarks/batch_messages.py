"""How many poll messages a tick sends for its due feeds: counted, not timed (round 71).

A poll message has a fixed cost, whatever it carries: Celery's consumer takes it from the broker
and hands it to a pool process, the batch reads its rows, commits, publishes (round 54 in
docs/performance-history.md: ~3.5 ms of the machine a message, 19 µs a poll between batches of
100 and 200). The tick cuts its due feeds by count (``poll_batch_size``) and by their last
bodies' bytes (``poll_batch_bytes``). Until round 71 it cut by count first and by bytes second,
so every batch past the byte bound went as two messages, a full one and the rest;
``pipeline.poll_batches`` cuts by both at once where that makes fewer messages.

For each size mix, ``--feeds`` due feeds in one tick (an origin each, as in the benchmark's
farm), this prints one JSON object: the messages and feeds a message of the old cut and of
``poll_batches`` at the settings' defaults and at ``--bytes`` bounds. The mixes:

- ``corpus``: each feed the size of a feed of the shared corpus (``../shared/corpus/feeds``,
  26 real feeds, 0.7-259 KB), drawn with ``--seed``; skipped when the corpus is absent;
- ``farm_first_window``: the benchmark's steady mix as its first capacity window saw it until
  round 71, seven 304 feeds in ten counted at ``UNKNOWN_BODY_BYTES`` (never a body seeded) and
  the rest at 41.4 KB;
- ``farm``: every feed at 41.4 KB, as the benchmark's feeds are once sized.

    .venv/bin/python benchmarks/batch_messages.py [--feeds 5000] [--bytes 4194304 6291456] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from feedwatch.pipeline import UNKNOWN_BODY_BYTES, cut_by_bytes, poll_batches, split_batches
from feedwatch.settings import Settings

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "feeds"
#: A farm feed's body: 50 items, 41.1-41.7 KB (``farm.constant_body``).
FARM_BODY = 41_400


def by_count_then_bytes(sizes: dict[int, int], most: int, most_bytes: int, least: int) -> list[list[int]]:
    """The tick's cut until round 71: near-equal batches by count, each then cut by bytes."""
    return [
        part
        for batch in split_batches(list(sizes), most, least)
        for part in cut_by_bytes(batch, [sizes[f] for f in batch], most_bytes)
    ]


def messages(sizes: dict[int, int], most: int, most_bytes: int, least: int) -> dict[str, Any]:
    old = by_count_then_bytes(sizes, most, most_bytes, least)
    new = poll_batches(sizes, most, most_bytes, least)
    return {
        "batch_bytes": most_bytes,
        "messages": {"count_then_bytes": len(old), "poll_batches": len(new)},
        "feeds_a_message": {
            "count_then_bytes": round(len(sizes) / len(old), 1),
            "poll_batches": round(len(sizes) / len(new), 1),
        },
        "ratio": round(len(new) / len(old), 3),
    }


def mixes(feeds: int, seed: int, corpus: Path) -> dict[str, dict[int, int] | None]:
    rng = random.Random(seed)
    sizes = sorted(p.stat().st_size for p in corpus.glob("*.xml")) if corpus.is_dir() else []
    return {
        "corpus": {f: rng.choice(sizes) for f in range(feeds)} if sizes else None,
        "farm_first_window": {f: UNKNOWN_BODY_BYTES if f % 10 < 7 else FARM_BODY for f in range(feeds)},
        "farm": dict.fromkeys(range(feeds), FARM_BODY),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=5000, help="due feeds in the tick (the claim's default)")
    parser.add_argument("--bytes", type=int, nargs="*", default=[4 << 20, 6 << 20], help="more byte bounds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args(argv)
    s = Settings()
    bounds = [s.poll_batch_bytes, *args.bytes]
    result: dict[str, Any] = {
        "feeds": args.feeds,
        "poll_batch_size": s.poll_batch_size,
        "poll_min_batches": s.poll_min_batches,
        "mixes": {},
    }
    for name, sizes in mixes(args.feeds, args.seed, args.corpus).items():
        if sizes is None:
            result["mixes"][name] = {"skipped": f"no feeds in {args.corpus}"}
            continue
        result["mixes"][name] = {
            "mean_bytes": round(sum(sizes.values()) / len(sizes)),
            "by_bound": [messages(sizes, s.poll_batch_size, b, s.poll_min_batches) for b in bounds],
        }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
