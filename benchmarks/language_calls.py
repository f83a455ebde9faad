"""A poll batch's changed feeds normalized with a language-model call a feed, against one call for
the batch (what ``pipeline._detect_languages`` does since round 31), in one process.

    .venv/bin/python benchmarks/language_calls.py [--feeds 10] [--new 2] [--rounds 40]

The steady mix's changed feed brings 2 new items of 50 (``run.py``), and a poll batch of 100
holds ~10 such feeds. Each feed here is one of the farm's ingest feeds cut to ``--new`` items,
as the poll hands them to normalize (the known items are not normalized). Rounds alternate the
two ways and which goes first; each times 20 passes over the batch in CPU time.

Prints one JSON object: µs a changed feed each way (medians of the rounds), the ratio a call a
feed ÷ one call, and ``same``: whether both ways give every draft the same language.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

PASSES = 20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--feeds", type=int, default=10, help="changed feeds in the batch")
    parser.add_argument("--new", type=int, default=2, help="new items a changed feed brings")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args(argv)

    from real_ingest import farm_bodies

    from feedwatch.normalize import ArticleDraft, draft_feed, normalize_feed, set_languages
    from feedwatch.parse import parse_feed

    now = datetime.now(UTC)
    feeds = []
    for i, body in enumerate(farm_bodies(args.feeds).values()):
        url = f"http://127.0.0.1/ingest/{i}.xml"
        parsed = parse_feed(body, headers={}, url=url)
        first = (i * args.new) % max(len(parsed.entries) - args.new, 1)
        feeds.append((replace(parsed, entries=parsed.entries[first : first + args.new]), url))

    def call_a_feed() -> list[ArticleDraft]:
        drafts: list[ArticleDraft] = []
        for parsed, url in feeds:
            drafts += normalize_feed(parsed, feed_url=url, configured_language=None, fetched_at=now)
        return drafts

    def one_call() -> list[ArticleDraft]:
        pairs = []
        for parsed, url in feeds:
            pairs += draft_feed(parsed, feed_url=url, configured_language=None, fetched_at=now)
        set_languages(pairs)
        return [draft for draft, _ in pairs]

    ways: dict[str, Callable[[], list[ArticleDraft]]] = {"call_a_feed": call_a_feed, "one_call": one_call}
    answers = {name: [d.language for d in way()] for name, way in ways.items()}  # also warms up
    times: dict[str, list[float]] = {name: [] for name in ways}
    for r in range(args.rounds):
        for name in sorted(ways, reverse=bool(r % 2)):
            started = time.process_time()
            for _ in range(PASSES):
                ways[name]()
            times[name].append((time.process_time() - started) / PASSES / len(feeds) * 1e6)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(
        json.dumps(
            {
                "feeds": len(feeds),
                "new_items_a_feed": args.new,
                "rounds": args.rounds,
                "us_a_changed_feed": {name: round(value, 1) for name, value in medians.items()},
                "ratio_call_a_feed_to_one_call": round(medians["call_a_feed"] / medians["one_call"], 3),
                "same": answers["call_a_feed"] == answers["one_call"],
            }
        )
    )


if __name__ == "__main__":
    main()
