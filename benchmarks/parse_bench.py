"""Parse cost of the shared corpus's real feeds: the parse stage as the service runs it (lxml fast
path, feedparser when it declines) against feedparser alone, measured in the same run.

    flock -x /tmp/bench.lock .venv/bin/python benchmarks/parse_bench.py [--repeat 7] [--min-time 0.05]

Prints one JSON object: per feed whether the fast path reads it and the best time of each way
(ms per parse, the two ways alternated), and totals over all feeds and over those the fast path
reads, each with its ratio fast ÷ feedparser. ``known_ms`` is the service's parse of a changed
feed: all entries but two stored already (``parse_feed(known=...)``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from feedwatch import known
from feedwatch.fastparse import read
from feedwatch.parse import MAX_AUTHOR, Known, ParseError, parse_feed

FEEDS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "feeds"
URL = "https://feeds.example/rss"


def _best_ms(call: Callable[[], object], min_time: float, repeat: int) -> float:
    """Best of ``repeat`` rounds, each of as many calls as fill ``min_time`` seconds."""
    start = time.perf_counter()
    call()
    once = max(time.perf_counter() - start, 1e-6)
    number = max(1, int(min_time / once))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            call()
        best = min(best, (time.perf_counter() - start) / number)
    return best * 1000


def _parse(body: bytes, fast: bool, stored: Known | None = None) -> Callable[[], object]:
    def call() -> object:
        try:
            return parse_feed(body, headers={}, url=URL, fast=fast, known=stored)
        except ParseError as exc:  # a broken feed costs its parse all the same
            return exc

    return call


def _all_but_two(body: bytes) -> Known | None:
    """The ``known`` predicate of a poll that finds two new entries (the first two)."""
    try:
        parsed = parse_feed(body, headers={}, url=URL)
    except ParseError:
        return None
    entries = tuple(e for e in parsed.entries if e.fingerprint)
    return known.predicate(known.fingerprints(replace(parsed, entries=entries[2:], kept=())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.05, help="seconds per round")
    args = parser.parse_args()
    if not FEEDS.is_dir():
        sys.exit(f"no shared corpus at {FEEDS}")
    feeds = []
    for path in sorted(FEEDS.glob("*.xml")):
        body = path.read_bytes()
        fast_path = read(body, {}, author_cap=MAX_AUTHOR) is not None
        # Alternate the two ways per feed so a busy minute hits both.
        fast_ms = _best_ms(_parse(body, True), args.min_time, args.repeat)
        feedparser_ms = _best_ms(_parse(body, False), args.min_time, args.repeat)
        known_ms = _best_ms(_parse(body, True, _all_but_two(body)), args.min_time, args.repeat)
        feeds.append(
            {"feed": path.name, "bytes": len(body), "fast_path": fast_path,
             "ms": round(fast_ms, 3), "feedparser_ms": round(feedparser_ms, 3),
             "ratio": round(fast_ms / feedparser_ms, 4), "known_ms": round(known_ms, 3)}
        )  # fmt: skip

    def total(rows: list[dict[str, object]]) -> dict[str, object]:
        ms = sum(float(str(r["ms"])) for r in rows)
        reference = sum(float(str(r["feedparser_ms"])) for r in rows)
        known_ms = sum(float(str(r["known_ms"])) for r in rows)
        return {"feeds": len(rows), "ms": round(ms, 2), "feedparser_ms": round(reference, 2),
                "ratio": round(ms / reference, 4) if reference else None,
                "known_ms": round(known_ms, 2)}  # fmt: skip

    print(
        json.dumps(
            {
                "corpus": str(FEEDS),
                "load_average": os.getloadavg(),
                "fast_path_feeds": sum(bool(r["fast_path"]) for r in feeds),
                "all": total(feeds),
                "on_fast_path": total([r for r in feeds if r["fast_path"]]),
                "declined": total([r for r in feeds if not r["fast_path"]]),
                "per_feed": feeds,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
