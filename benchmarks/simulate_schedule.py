"""A week of polls on a fast clock: the adaptive schedule against a fixed interval.

Each rhythm is a feed showing its newest ``WINDOW`` items. The adaptive run goes through the
real code that a poll ends in (``feedstate.record_success`` / ``record_failure``, so the same
history, hints and ``schedule`` functions); the baseline polls every ``--interval`` minutes
(±10 % jitter) whatever happens. Printed as JSON: requests, items ingested and missed (rolled
out of the window unseen), the delay from publication to ingestion (mean, median, p95), and for
the adaptive runs the poll history a poll leaves, which every poll reads and writes back: its
entries and its bytes as the service stores them, averaged over the polls.

    .venv/bin/python benchmarks/simulate_schedule.py [--days 7] [--interval 10] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from feedwatch import feedstate
from feedwatch.db import json_bytes
from feedwatch.fetch import FetchRequest, FetchResult
from feedwatch.models import Feed
from feedwatch.parse import ParsedEntry, ParsedFeed
from feedwatch.pipeline import PollReport

WINDOW = 20
START = datetime(2025, 3, 3, tzinfo=UTC)
HOUR = 3600.0


@dataclass
class Rhythm:
    name: str
    items: list[float]  # publication times, seconds from START (negative: before the week)
    down: Callable[[float], bool] = lambda t: False  # is the server failing at time t?


def steady_hourly(rng: random.Random, days: int) -> Rhythm:
    return Rhythm("steady hourly", [h * HOUR + rng.uniform(-300, 300) for h in range(-WINDOW, days * 24)])


def bursty_desk(rng: random.Random, days: int) -> Rhythm:
    """A news desk: one item every 2 h, and three 2-hour bursts a day at ~20 items an hour."""
    items = [t * 2 * HOUR for t in range(-WINDOW, days * 12)]
    for day in range(days):
        for start in rng.sample(range(6, 22), 3):
            base = (day * 24 + start) * HOUR
            items += [base + rng.uniform(0, 2 * HOUR) for _ in range(40)]
    return Rhythm("bursty news desk", sorted(items))


def quiet_weekly(rng: random.Random, days: int) -> Rhythm:
    return Rhythm(
        "quiet weekly", [w * 7 * 24 * HOUR + rng.uniform(0, 24 * HOUR) for w in range(-WINDOW, days // 7 + 1)]
    )


def dead(rng: random.Random, days: int) -> Rhythm:
    return Rhythm("dead", [-(200 + i) * 24 * HOUR for i in range(WINDOW)])


def flapping(rng: random.Random, days: int) -> Rhythm:
    """One item every 2 h from a server that is down for whole hours at random, half the time."""
    down_hours = {h for h in range(days * 24) if rng.random() < 0.5}
    items = [t * 2 * HOUR + rng.uniform(0, 600) for t in range(-WINDOW, days * 12)]
    return Rhythm("flapping", items, down=lambda t: int(t // HOUR) in down_hours)


RHYTHMS = (steady_hourly, bursty_desk, quiet_weekly, dead, flapping)


@dataclass
class Outcome:
    requests: int = 0
    delays: list[float] = field(default_factory=list)  # minutes
    missed: int = 0
    histories: list[tuple[int, int]] = field(default_factory=list)  # (entries, bytes) after a poll


class _OneFeed:
    """The session that record_success/record_failure see: just this feed."""

    def __init__(self, feed: Feed) -> None:
        self.feed = feed

    def get(self, _model: Any, _id: int) -> Feed:
        return self.feed

    def add(self, _obj: Any) -> None:
        pass


def _parsed(published: list[float]) -> ParsedFeed:
    entries = tuple(
        ParsedEntry(f"g{t}", None, "t", "", "", None, START + timedelta(seconds=t), None, None, None)
        for t in published
    )
    return ParsedFeed("sim", None, None, entries, False, None, None, None, None, None, None, "rss20")


def _observe(rhythm: Rhythm, t: float, seen: set[float], out: Outcome) -> tuple[list[float], int]:
    """Ingest what the window shows at ``t``; returns the window and how many items were new."""
    window = [p for p in rhythm.items if p <= t][-WINDOW:]
    new = [p for p in window if p not in seen]
    for p in new:
        seen.add(p)
        if p >= 0:
            out.delays.append((t - p) / 60)
    return window, len(new)


Step = Callable[[float, Rhythm, set[float], Outcome], float]


def run(rhythm: Rhythm, days: int, step: Step) -> Outcome:
    out, seen, t = Outcome(), {p for p in rhythm.items if p < 0}, 0.0
    while t < days * 24 * HOUR:
        out.requests += 1
        t += step(t, rhythm, seen, out)
    week = [p for p in rhythm.items if 0 <= p < days * 24 * HOUR]
    out.missed = len([p for p in week if p not in seen])
    return out


def fixed(interval: float, rng: random.Random) -> Step:
    def step(t: float, rhythm: Rhythm, seen: set[float], out: Outcome) -> float:
        if not rhythm.down(t):
            _observe(rhythm, t, seen, out)
        return interval * 60 * (1 + rng.uniform(-0.1, 0.1))

    return step


def adaptive(interval: float, rng: random.Random, feed: Feed | None = None) -> Step:
    feed = feed or Feed(id=1, config_url="sim", url="sim", interval_minutes=interval, created_at=START)
    session: Any = _OneFeed(feed)
    result = FetchResult(FetchRequest("sim"), "sim", 200, False, b"")

    def step(t: float, rhythm: Rhythm, seen: set[float], out: Outcome) -> float:
        now = START + timedelta(seconds=t)
        report = PollReport(1, "sim", "ok")
        if rhythm.down(t):
            report.outcome, report.error_class, report.http_status = "error", "http_5xx", 503
            feedstate.record_failure(session, 1, "http_5xx", "down", None, report, now, rng)
        else:
            window, new = _observe(rhythm, t, seen, out)
            # An unchanged body is not parsed again (the pipeline compares body hashes).
            report.outcome = "ok" if new else "unchanged"
            report.entries, report.new = (len(window), new) if new else (0, 0)
            parsed = _parsed(window) if new or t == 0 else None
            feedstate.record_success(session, 1, result, "h", report, now, rng, parsed)
        out.histories.append((len(feed.poll_history), len(json_bytes(feed.poll_history))))
        return (feed.next_check_at - now).total_seconds()

    return step


def history_after(
    make: Callable[[random.Random, int], Rhythm], days: int, interval: float, seed: int = 1
) -> list[dict[str, Any]]:
    """The poll history this checkout's ``feedstate`` leaves on a feed of this rhythm after
    ``days`` of adaptive polls (configured ``interval``, no bounds): what such a feed's row holds
    in service, for a benchmark to seed (``run.insert_feeds``' ``history="hourly"``)."""
    feed = Feed(id=1, config_url="sim", url="sim", interval_minutes=interval, created_at=START)
    run(make(random.Random(seed), days), days, adaptive(interval, random.Random(seed), feed))
    return list(feed.poll_history)


def summary(out: Outcome) -> dict[str, Any]:
    delays = sorted(out.delays)
    return {
        "requests": out.requests,
        "ingested": len(delays),
        "missed": out.missed,
        "delay_mean_min": round(statistics.fmean(delays), 1) if delays else None,
        "delay_median_min": round(statistics.median(delays), 1) if delays else None,
        "delay_p95_min": round(delays[int(0.95 * (len(delays) - 1))], 1) if delays else None,
        **(
            {
                "history_entries_mean": round(statistics.fmean(e for e, _ in out.histories), 1),
                "history_bytes_mean": round(statistics.fmean(b for _, b in out.histories)),
            }
            if out.histories
            else {}
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--interval", type=float, default=10.0, help="configured / baseline minutes")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    report: dict[str, Any] = {"days": args.days, "interval_min": args.interval, "window": WINDOW, "feeds": {}}
    totals = {name: Outcome() for name in ("fixed", "adaptive")}
    for make in RHYTHMS:
        rhythm = make(random.Random(args.seed), args.days)
        row = {}
        for name, policy in (("fixed", fixed), ("adaptive", adaptive)):
            out = run(rhythm, args.days, policy(args.interval, random.Random(args.seed)))
            row[name] = summary(out)
            totals[name].requests += out.requests
            totals[name].delays += out.delays
            totals[name].missed += out.missed
            totals[name].histories += out.histories
        report["feeds"][rhythm.name] = row
    report["total"] = {name: summary(out) for name, out in totals.items()}
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
