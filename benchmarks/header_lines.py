"""What each header line of an answer costs the fetch: 304s with the farm's few header lines
against 304s with ``--extra`` more, through the service's ``fetch_all``, CPU a request.

The farm answers a 304 with 4–5 header lines (the status line, ETag, Date, Server,
Content-Length); a real server sends 10–20 (Cache-Control, Vary, cookies, a CDN's own). libcurl
hands each line to a Python callback and the fetch parses them where the headers end, so the
farm may make a poll cheaper than a deployment's (round 42 in docs/performance-history.md):

    .venv/bin/python benchmarks/header_lines.py [--extra 15] [--rounds 5] [--batches 60]

A loopback server (``loopback304.py``: an aiohttp child, stopped by its pid) answers every GET
with a 304 and ``extra`` headers of ~30 bytes, or none; the two alternate ``--rounds`` times,
each timing ``--batches`` batches of 100 conditional GETs on this process's CPU clock. Prints
one JSON object: µs a request by the number of extra lines, per round, and the difference a
line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loopback304 import REPO, service_fetch, serving

BATCH = 100


def cpu_a_request(extra: int, batches: int) -> float:
    from feedwatch.fetch import FetchRequest, FetchResult, fetch_all

    config, policy = service_fetch()
    headers = {"ETag": '"e1"', **{f"X-Extra-{i}": "value-" + "v" * 20 for i in range(extra)}}
    with serving(headers) as port:
        requests = [
            FetchRequest(url=f"http://127.0.0.1:{port}/f{i}.xml", etag='"e1"', key=i) for i in range(BATCH)
        ]
        for _ in range(3):  # connections opened, caches warm
            fetch_all(requests, config, policy)
        started = time.process_time()
        for _ in range(batches):
            results = fetch_all(requests, config, policy)
            failed = [r for r in results if not isinstance(r, FetchResult) or not r.not_modified]
            if failed:
                raise RuntimeError(f"not a 304: {failed[0]!r}")
        spent = time.process_time() - started
        first = results[0]
        assert isinstance(first, FetchResult)  # every result was checked a 304 above
        if len(first.headers) < extra:
            raise RuntimeError(f"the extra headers did not arrive: {first.headers}")
        return spent / (batches * BATCH) * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--extra", type=int, default=15, help="header lines added to the farm's few")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=60, help="timed batches of 100 requests a round")
    args = parser.parse_args(argv)
    if args.extra < 1:
        parser.error("--extra must be at least 1")
    runs: dict[int, list[float]] = {0: [], args.extra: []}
    for _ in range(args.rounds):
        for extra in runs:
            runs[extra].append(round(cpu_a_request(extra, args.batches), 2))
    few, more = (round(statistics.fmean(runs[k]), 2) for k in (0, args.extra))
    result = {
        "repo": str(REPO),
        "requests_a_round": args.batches * BATCH,
        "us_a_request": {str(k): v for k, v in runs.items()},
        "means": {"0": few, str(args.extra): more},
        "us_a_line": round((more - few) / args.extra, 3),
        "ratio": round(more / few, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
