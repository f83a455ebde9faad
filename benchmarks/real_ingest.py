"""Ingest of the shared corpus's real feeds, every item new: the service's CPU an item against
feedparser alone on the same bytes, in one process, measured in the same run.

    .venv/bin/python benchmarks/real_ingest.py [--rounds 5] [--feeds-dir ../shared/corpus/feeds]

``run.py``'s ingest figure is measured on the farm's generated feeds (50 short items each,
teasers of ~400 characters). Real feeds differ: some carry whole articles in
``content:encoded``, most a teaser with markup, in four scripts, so what the service spends on an
item beside the parse (the text, language, rules, the row) weighs differently. This measures the
ingest on the real thing, one process and one core, without the noise of a whole deployment:

- the service: ``pipeline.poll_feeds`` over every corpus feed served from a loopback HTTP
  server (a child process, stopped by its pid), into a database emptied before each round, so
  every item is new: the fetch, the parse (the lxml fast path, feedparser where it declines),
  normalize, the rules, the story signatures of flagged items, the rows. CPU of this process,
  of the database's backends, and of the HTTP server, per stored article.
- feedparser alone on the same bytes, with the service's options (``sanitize_html=False``,
  ``resolve_relative_uris=False``: ``run.py``'s ingest baseline) and with its defaults, per
  entry it returns; alternated with the service's rounds.

Prints one JSON object. ``ratio`` is feedparser's CPU an item ÷ the service's (its process,
PostgreSQL and the server together): the service's items per second on the same cores as a
share of feedparser's, as ``run.py``'s ``ingest.ratio``, without the alerts worker (its
deliveries: the farm run's ~0.04 ms an item at one flagged item in 20) and Celery. Needs
PostgreSQL (``FEEDWATCH_TEST_PG``); without the corpus it prints ``{"skipped": ...}``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from poll_costs import checked, postgres_cpu
from run import Service, feedparser_options, postgres_database, proc_cpu

FEEDS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "feeds"


@contextlib.contextmanager
def file_server(directory: Path) -> Iterator[tuple[int, int]]:
    """``python -m http.server`` on 127.0.0.1 over ``directory``: (port, pid); stopped by pid."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-m",
            "http.server",
            "0",
            "--bind",
            "127.0.0.1",
            "--directory",
            str(directory),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port 40123 (http://...) ..."
        if "port" not in line:
            raise RuntimeError(f"http.server did not start: {line!r}")
        yield int(line.split("port", 1)[1].split()[0]), proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def served_feeds(service: Service, port: int, names: list[str]) -> list[int]:
    """A feed row for each file of ``names`` served on ``port``, in an empty database: their ids,
    in ``names``' order."""
    from sqlalchemy import insert

    from feedwatch.models import Feed

    rows = []
    for name in names:
        url = f"http://127.0.0.1:{port}/{name}"
        rows.append(Feed(config_url=url, url=url, name=name).model_dump(exclude={"id"}))
    with service.engine.begin() as conn:
        conn.execute(insert(Feed), rows)
    return [fid for (fid,) in service.execute("SELECT id FROM feed ORDER BY id")]


def service_round(service: Service, names: list[str], port: int, server_pid: int) -> dict[str, float]:
    """One ingest of the served files ``names`` into an emptied database (every item new): CPU
    seconds, articles stored, alerts raised. One database and one engine for the whole run, as a
    worker keeps its engine: SQLAlchemy compiles each statement once an engine, and a database
    a round had put that compilation (~4 % of the samples) into every round."""
    from feedwatch import pipeline

    # Every table that refers to a feed, and to those, goes with it; the migrations' stay.
    service.execute("TRUNCATE feed RESTART IDENTITY CASCADE")
    ids = served_feeds(service, port, names)
    ctx = pipeline.Context(settings=service.settings)
    size = service.settings.poll_batch_size
    gc.collect()
    cpu, pg, srv = time.process_time(), postgres_cpu(service), proc_cpu(server_pid)
    reports = []
    for k in range(0, len(ids), size):
        reports += checked(pipeline.poll_feeds(ctx, ids[k : k + size]))
    cpu, pg, srv = time.process_time() - cpu, postgres_cpu(service) - pg, proc_cpu(server_pid) - srv
    if any(r.outcome != "ok" for r in reports):
        raise SystemExit(f"not every feed was read as new: {sorted({r.outcome for r in reports})}")
    return {
        "process_s": cpu,
        "postgres_s": pg,
        "server_s": srv,
        "articles": int(service.execute("SELECT count(*) FROM article")[0][0]),
        "alerts": int(service.execute("SELECT count(*) FROM alert")[0][0]),
        # Articles whose full text the service would fetch (the alerts worker's articles queue):
        # an anchor of a rule occurs and no topic matched yet. Not fetched here.
        "full_text_candidates": int(
            service.execute("SELECT count(*) FROM article WHERE full_text_status IS NOT NULL")[0][0]
        ),
    }


def feedparser_round(bodies: list[bytes], defaults: bool) -> tuple[float, int]:
    """CPU seconds and entries of feedparser over every body once."""
    import feedparser

    options = feedparser_options(defaults)
    started, entries = time.process_time(), 0
    for body in bodies:
        entries += len(feedparser.parse(body, **options).entries)
    return time.process_time() - started, entries


def fast_path_declines(bodies: dict[str, bytes]) -> list[str]:
    """The feeds the lxml fast path declines (feedparser reads them), as parse.py asks it."""
    from feedwatch.fastparse import read
    from feedwatch.parse import MAX_AUTHOR

    return sorted(name for name, body in bodies.items() if read(body, {}, author_cap=MAX_AUTHOR) is None)


def farm_bodies(count: int) -> dict[str, bytes]:
    """The farm's ingest feeds (``run.py``'s ingest phase: 50 new items each, one in 20 flagged)."""
    from farm import Group, render_feed

    group = Group(name="ingest", feeds=count, mix={"new": 1}, items=50, new_items=50)
    return {f"farm-{i}.xml": render_feed(group, i, i * group.items, 8080) for i in range(count)}


def measure(sets: dict[str, dict[str, bytes]], directory: Path, rounds: int) -> dict[str, Any]:
    """Each set's service rounds and feedparser rounds, alternated set by set, the first round of
    each unmeasured."""
    totals: dict[str, dict[str, float]] = {name: {} for name in sets}
    by_round: dict[str, list[list[float]]] = {name: [] for name in sets}
    with (
        file_server(directory) as (port, pid),
        tempfile.TemporaryDirectory(prefix="fw-real-") as tmp,
        postgres_database() as db_url,
    ):
        service = Service(Path(tmp), db_url, "memory://", 1)
        for round_ in range(rounds + 1):
            for name, bodies in sets.items():
                got = service_round(service, sorted(bodies), port, pid)
                fp_s, entries = feedparser_round(list(bodies.values()), defaults=False)
                fp_default_s, _ = feedparser_round(list(bodies.values()), defaults=True)
                if round_ == 0:
                    continue
                got.update(feedparser_s=fp_s, feedparser_defaults_s=fp_default_s, feedparser_entries=entries)
                for key, value in got.items():
                    totals[name][key] = totals[name].get(key, 0.0) + value
                machine = got["process_s"] + got["postgres_s"] + got["server_s"]
                by_round[name].append([machine / got["articles"] * 1000, fp_s / entries * 1000])
        service.engine.dispose()
    return {name: summary(totals[name], by_round[name], sets[name], rounds) for name in sets}


def summary(
    t: dict[str, float], by_round: list[list[float]], bodies: dict[str, bytes], rounds: int
) -> dict[str, Any]:
    articles = t["articles"]

    def per_item(seconds: float, items: float = articles) -> float:
        return round(seconds / items * 1000, 4)

    service_ms = per_item(t["process_s"] + t["postgres_s"] + t["server_s"])
    feedparser_ms = per_item(t["feedparser_s"], t["feedparser_entries"])
    feedparser_defaults_ms = per_item(t["feedparser_defaults_s"], t["feedparser_entries"])
    return {
        "feeds": len(bodies),
        "bytes": sum(map(len, bodies.values())),
        "articles_a_round": int(articles / rounds),
        "feedparser_entries_a_round": int(t["feedparser_entries"] / rounds),
        "alerts_a_round": int(t["alerts"] / rounds),
        "full_text_candidates_a_round": int(t["full_text_candidates"] / rounds),
        "fast_path_declines": fast_path_declines(bodies),
        "service_cpu_ms_per_item": {
            "total": service_ms,
            "process": per_item(t["process_s"]),
            "postgres": per_item(t["postgres_s"]),
            "http_server": per_item(t["server_s"]),
        },
        "feedparser_cpu_ms_per_item": {"service_options": feedparser_ms, "defaults": feedparser_defaults_ms},
        "by_round_service_and_feedparser_ms": [[round(a, 4), round(b, 4)] for a, b in by_round],
        "ratio": round(feedparser_ms / service_ms, 3),
        "ratio_to_defaults": round(feedparser_defaults_ms / service_ms, 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds of each (after one warm-up)")
    parser.add_argument("--feeds-dir", type=Path, default=FEEDS)
    args = parser.parse_args(argv)
    files = sorted(args.feeds_dir.glob("*.xml")) if args.feeds_dir.is_dir() else []
    if not files:
        print(json.dumps({"skipped": f"no feeds in {args.feeds_dir}"}))
        return

    from feedwatch.logs import configure_logging
    from feedwatch.settings import Settings

    configure_logging(Settings(log_level="WARNING", log_format="json"))
    real = {path.name: path.read_bytes() for path in files}
    sets = {"real": real, "farm": farm_bodies(len(real))}
    with tempfile.TemporaryDirectory(prefix="fw-real-feeds-") as tmp:
        for bodies in sets.values():
            for name, body in bodies.items():
                (Path(tmp) / name).write_bytes(body)
        result = measure(sets, Path(tmp), args.rounds)
    result["rounds"] = args.rounds
    # The farm's items against the real ones, on the same process and database in the same run.
    result["real_ratio_vs_farm_ratio"] = round(result["real"]["ratio"] / result["farm"]["ratio"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
