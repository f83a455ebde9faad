"""A feeds worker's peak memory polling large feeds, with the batch bounded by bytes and without.

    .venv/bin/python benchmarks/batch_memory.py [--feeds 40] [--items 250] [--item-bytes 4000] [--bound B]

A poll batch holds its feeds' bodies, their parsed entries and their drafts together (a parsed
feed with its drafts is ~2x its body), so ``FEEDWATCH_POLL_BATCH_SIZE`` alone bounds a worker's
memory only for feeds of a known size: the farm's 50 KB feeds or the shared corpus's 60 KB on
average, not a deployment of outlets that put whole articles in their feeds.
``FEEDWATCH_POLL_BATCH_BYTES`` bounds it by bytes (``pipeline.cut_by_bytes``), and
``FEEDWATCH_POLL_PART_BYTES`` what a worker parses and stores at a time. This serves
``--feeds`` generated feeds of ``--items`` items with ~``--item-bytes`` of article text each
(``content:encoded``, one in 20 items about a watched topic) from a loopback ``http.server``
(stopped by its pid) and runs the real tick and ``pipeline.poll_feeds`` in a fresh child
process for each configuration, every item new, each into its own PostgreSQL database:

- ``unbounded``: both bounds 1 TiB: one batch of every feed, as before round 24;
- ``parts``: the default bounds (or ``--bound``, ``--part-bound``), the feeds never fetched
  (the tick counts each as 64 KiB and sends one batch): the fetch keeps the bodies past the
  batch's bound in temporary files (``fetch_all``'s ``hold_bytes``, since round 26) and the
  worker parses and stores them in parts of the part bound (the batch's bound until round 55);
- ``tick``: the same bounds, every feed's last size known (``Feed.body_bytes``, as its
  previous poll leaves it): the tick sends batches of the batch's bound, polled one after another.

Prints one JSON object: each configuration's peak RSS (the child's ``VmHWM``), its RSS before
the tick (the same process warmed by one small poll: its imports, the language model, the
engine) and the growth between them, its CPU an item, its batches and parts, the bodies the
fetch kept in temporary files (``bodies_spilled``); and the growths
and CPUs as ratios against ``unbounded``'s in the same run. The RSS target is 200 MB a worker
process. Needs PostgreSQL (``FEEDWATCH_TEST_PG``).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import subprocess
import sys
import tempfile
import time
from html import escape
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from farm import MATCH_TEXT
from real_ingest import file_server, served_feeds
from run import postgres_database, proc_field

CONFIGS = ("unbounded", "parts", "tick")
STATUS = Path("/proc/self/status")
#: The article text's words, drawn at random (deterministically, by feed).
WORDS = (
    "government minister said on the talks week region border trade energy pipeline agreement "
    "officials would meeting capital foreign economic security council statement president "
    "visit delegation report public project budget city district court weather market"
)


def render_feed(index: int, items: int, item_bytes: int) -> bytes:
    """An RSS 2.0 feed of ``items`` items with ~``item_bytes`` of article text each."""
    rng, words_ = random.Random(index), WORDS.split()
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel>',
        f"<title>Large feed {index}</title><link>http://127.0.0.1/{index}</link><description>d</description>",
    ]
    for seq in range(items):
        link = f"http://127.0.0.1/large/{index}/{seq}"
        words = " ".join(rng.choice(words_) for _ in range(item_bytes // 7))
        lead = MATCH_TEXT.format(words="") if seq % 20 == 0 else "The city reported on its plans."
        body = f"<p>{lead}</p><p>{words}</p>"
        parts.append(
            f"<item><title>Story {index}-{seq}</title><link>{link}</link><guid>{link}</guid>"
            f"<pubDate>Wed, 02 Dec 2026 10:{seq % 60:02d}:00 +0000</pubDate>"
            f"<description>{escape(lead)}</description>"
            f"<content:encoded>{escape(body)}</content:encoded></item>"
        )
    parts.append("</channel></rss>")
    return "".join(parts).encode()


class BatchLines(logging.Handler):
    """The service's own account of each poll batch: its ``poll.batch`` log line, which counts
    the batch's parts and the bodies it kept in temporary files when there are any.

    structlog hands the stdlib logger its event dict as the record's message
    (``feedwatch.logs``); the pipeline's logger is taken out of the process's (WARNING) output
    and read here alone."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.batches: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, dict) and record.msg.get("event") == "poll.batch":
            self.batches.append(record.msg)

    @classmethod
    def attached(cls) -> BatchLines:
        lines = cls()
        logger = logging.getLogger("feedwatch.pipeline")  # the ``logger`` field of its lines
        logger.handlers[:] = [lines]
        logger.setLevel(logging.INFO)
        logger.propagate = False
        return lines


def child(
    config: str, db_url: str, port: int, names: list[str], sizes: list[int], bound: int, part_bound: int
) -> dict[str, Any]:
    """One configuration in this (fresh) process: the tick, then each batch it sent."""
    from poll_costs import checked
    from run import Service
    from sqlalchemy import update
    from sqlmodel import col

    from feedwatch import pipeline
    from feedwatch.logs import configure_logging
    from feedwatch.models import Feed

    with tempfile.TemporaryDirectory(prefix="fw-batch-memory-") as home:
        service = Service(Path(home), db_url, "memory://", 1)
        configure_logging(service.settings.model_copy(update={"log_level": "WARNING"}))
        if config == "unbounded":
            bound = part_bound = 1 << 40
        settings = service.settings.model_copy(
            update={
                "poll_batch_bytes": bound,
                "poll_part_bytes": part_bound,
                "poll_min_batches": 1,
                "poll_batch_size": 100,
            }
        )
        ids = served_feeds(service, port, ["warm.xml", *names])
        published: list[list[int]] = []
        ctx = pipeline.Context(settings=settings, publish_poll=published.append)
        checked(pipeline.poll_feeds(ctx, ids[:1]))  # warm: imports, the language model, the engine
        if config == "tick":  # as each feed's previous poll leaves it
            with service.engine.begin() as conn:
                for feed_id, size in zip(ids[1:], sizes, strict=True):
                    conn.execute(update(Feed).where(col(Feed.id) == feed_id).values(body_bytes=size))
        lines = BatchLines.attached()
        rss_before = proc_field(STATUS, "VmRSS")
        cpu = time.process_time()
        pipeline.tick(ctx)
        reports = []
        for batch in published:
            reports += checked(pipeline.poll_feeds(ctx, batch))
        cpu = time.process_time() - cpu
        peak = proc_field(STATUS, "VmHWM")
        if any(r.outcome != "ok" for r in reports) or len(reports) != len(names):
            raise SystemExit(f"{config}: not every feed was polled as new")
        articles = int(service.execute(f"SELECT count(*) FROM article WHERE feed_id <> {ids[0]}")[0][0])
        service.engine.dispose()
    return {
        "peak_rss_mb": round(peak / 1024, 1),
        "rss_before_mb": round(rss_before / 1024, 1),
        "growth_mb": round((peak - rss_before) / 1024, 1),
        "cpu_ms_per_item": round(cpu / articles * 1000, 4),
        "articles": articles,
        "batches": len(published),
        "parts": sum(line.get("parts", 1) for line in lines.batches),
        "bodies_spilled": sum(line.get("spilled", 0) for line in lines.batches),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--feeds", type=int, default=40)
    parser.add_argument("--items", type=int, default=250, help="items a feed")
    parser.add_argument("--item-bytes", type=int, default=4000, help="article text an item, about")
    parser.add_argument(
        "--bound",
        type=int,
        help="poll_batch_bytes (the tick's and the fetch's bound) and, unless --part-bound, poll_part_bytes"
        " (default: the service's defaults)",
    )
    parser.add_argument("--part-bound", type=int, help="poll_part_bytes: the bytes a part parses")
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from feedwatch.settings import Settings

    names = [f"large-{i}.xml" for i in range(args.feeds)]
    bound = args.bound or Settings.model_fields["poll_batch_bytes"].default
    part_bound = args.part_bound or args.bound or Settings.model_fields["poll_part_bytes"].default
    if args.child:
        sizes = json.loads(args.sizes)
        print(json.dumps(child(args.child, args.db, args.port, names, sizes, bound, part_bound)))
        return
    with tempfile.TemporaryDirectory(prefix="fw-batch-memory-feeds-") as tmp:
        directory = Path(tmp)
        (directory / "warm.xml").write_bytes(render_feed(-1, 5, 200))
        sizes = []
        for i, name in enumerate(names):
            body = render_feed(i, args.items, args.item_bytes)
            (directory / name).write_bytes(body)
            sizes.append(len(body))
        results: dict[str, Any] = {}
        with file_server(directory) as (port, _pid):
            for config in CONFIGS:
                with postgres_database() as db_url:
                    command = [
                        sys.executable,
                        __file__,
                        "--child",
                        config,
                        "--db",
                        db_url,
                        "--port",
                        str(port),
                    ]
                    command += [
                        "--feeds",
                        str(args.feeds),
                        "--sizes",
                        json.dumps(sizes),
                        "--bound",
                        str(bound),
                        "--part-bound",
                        str(part_bound),
                    ]
                    proc = subprocess.run(command, check=False, capture_output=True, text=True)
                    if proc.returncode != 0:
                        raise SystemExit(f"{config} failed:\n{proc.stderr[-3000:]}")
                    results[config] = json.loads(proc.stdout.strip().splitlines()[-1])
    base = results["unbounded"]
    summary: dict[str, Any] = {
        "feeds": args.feeds,
        "items_a_feed": args.items,
        "bytes_a_feed": round(sum(sizes) / len(sizes)),
        "bytes": sum(sizes),
        "poll_batch_bytes": bound,
        "poll_part_bytes": part_bound,
        **results,
    }
    for config in CONFIGS[1:]:
        summary[f"growth_ratio_{config}_vs_unbounded"] = round(
            results[config]["growth_mb"] / base["growth_mb"], 3
        )
        summary[f"cpu_ratio_{config}_vs_unbounded"] = round(
            results[config]["cpu_ms_per_item"] / base["cpu_ms_per_item"], 3
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
