"""Which stages of an ingested item move with the machine's level: a few seconds, one process.

    .venv/bin/python benchmarks/level_probe.py [--seconds 20]

This machine's Python runs at levels that swing within minutes (docs/performance.md,
"Figures"). At round 22's fast level feedparser alone parsed ~1.7x the items a second it parsed
at round 24's middle level, while the service stored about as many: the ingest ratio target is
met at the slow and middle levels and missed at the fast one. ``perf stat`` has no hardware
counters in this VM, so this times the stages instead, on the farm's ingest feed (50 new items,
one in 20 flagged), in rounds that alternate them so they share the same minutes:

- ``python_loop``: a bare bytecode loop, ns a step (the level itself);
- ``feedparser``: ``feedparser.parse`` with the service's options, µs an item (the baseline);
- ``parse``: the service's parse of the same bytes (the lxml fast path), µs an item;
- ``normalize``: ``normalize_feed`` of the parsed entries, language detection included;
- ``language``: the language model alone on the drafts' titles and texts (``classify_many``);
- ``rules``: the shipped rulebook over the drafts (``pipeline.match_drafts``).

Prints one JSON object: µs an item by stage (the median of the rounds), and each stage against
feedparser and against the loop. Two runs at different levels show which stages move with it:
a stage whose ``per_loop_step`` stays put moves with the level; one whose ``per_loop_step``
grows as the loop gets faster does not. No database: PostgreSQL's share is not measured here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parents[1]
LOOP_STEPS = 200_000


def python_loop() -> None:
    i = 0
    while i < LOOP_STEPS:
        i += 1


def stages() -> dict[str, tuple[Callable[[], Any], int]]:
    """Each stage's callable and the units it does a call (loop steps or items)."""
    import feedparser
    from real_ingest import farm_bodies
    from run import feedparser_options

    from feedwatch import pipeline
    from feedwatch.normalize import _identifier, normalize_feed
    from feedwatch.parse import parse_feed

    (body,) = farm_bodies(1).values()
    options = feedparser_options()
    url = "http://127.0.0.1:8080/feed/0"
    parsed = parse_feed(body, headers={}, url=url)
    now = datetime.now(UTC)
    drafts = normalize_feed(parsed, feed_url=url, configured_language=None, fetched_at=now)
    texts = [f"{d.title}\n{d.text}" for d in drafts]
    model = _identifier()
    rulebook = pipeline.get_rulebook(REPO / "config" / "rules.toml")
    items = len(parsed.entries)
    return {
        "python_loop": (python_loop, LOOP_STEPS),
        "feedparser": (lambda: feedparser.parse(body, **options), items),
        "parse": (lambda: parse_feed(body, headers={}, url=url), items),
        "normalize": (
            lambda: normalize_feed(parsed, feed_url=url, configured_language=None, fetched_at=now),
            items,
        ),
        "language": (lambda: model.classify_many(texts), items),
        "rules": (lambda: pipeline.match_drafts(rulebook, drafts), items),
    }


def measure(seconds: float) -> dict[str, Any]:
    timed = stages()
    for call, _ in timed.values():  # warm: caches, the model's pages
        call()
    per_unit: dict[str, list[float]] = {name: [] for name in timed}
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline or rounds < 3:
        for name, (call, units) in timed.items():
            started = time.process_time()
            calls = 0
            while time.process_time() - started < 0.05:
                call()
                calls += 1
            per_unit[name].append((time.process_time() - started) / (calls * units))
        rounds += 1
    median = {name: statistics.median(values) for name, values in per_unit.items()}
    loop, baseline = median["python_loop"], median["feedparser"]
    return {
        "rounds": rounds,
        "python_loop_ns_a_step": round(loop * 1e9, 2),
        "us_an_item": {n: round(v * 1e6, 3) for n, v in median.items() if n != "python_loop"},
        "per_feedparser": {n: round(v / baseline, 3) for n, v in median.items() if n != "python_loop"},
        "per_loop_step": {n: round(v / loop, 1) for n, v in median.items() if n != "python_loop"},
        "spread": {n: round((max(v) - min(v)) / statistics.median(v), 3) for n, v in per_unit.items()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.seconds)))


if __name__ == "__main__":
    main()
