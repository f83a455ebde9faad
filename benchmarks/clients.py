"""CPU per request of HTTP clients against the farm, in one run: what a different client would buy.

    .venv/bin/python benchmarks/clients.py [--feeds 2000] [--seconds 8] [--rounds 3] [--mix 304=1]

The fetch is a third of the feeds worker's CPU while polling (docs/performance.md), and the poll
ratio's baseline is a bare aiohttp loop. This measures, against one farm serving the steady mix
(70 % 304, 20 % unchanged, 10 % with 2 new items of 50; ``--mix`` for another), with 50
requests in flight and conditional GETs for the 304 feeds:

* ``aiohttp_bare``: ``run.py``'s floor loop (one session, keep-alive);
* ``service``: the service's own fetch (``feedwatch.fetch.fetch_all``, batches of 100, the
  address guard, per-host slots, redirects followed by hand, bodies bounded), as a feeds worker
  calls it;
* ``pycurl_bare``: libcurl's multi interface through pycurl, one handle per request in flight,
  keep-alive;
* (``pycurl_guarded``, round 17's estimate of a service fetch on libcurl, was dropped in round 18
  once ``service`` became that fetch: it had grown into a copy of the service's own guard and
  header handling.)

Each client runs ``--seconds`` a round, in turn, ``--rounds`` times. Prints one JSON object:
per client the requests per second and the CPU of this process and of the farm per request
(best of the rounds: these machines are noisy), and ratios against ``aiohttp_bare`` in the same
run. The farm runs as a child process, stopped by its pid.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from farm import Group, feed_etag, groups_from_config, parse_mix, raise_mmap_threshold
from run import bare_loop, farm_process, farm_url, proc_cpu

from feedwatch.fetch import AddressPolicy, FetchConfig, FetchError, FetchRequest, fetch_all

IN_FLIGHT = 50
BATCH = 100


def _etag(group: Group, index: int) -> str | None:
    """What a client sends in If-None-Match for this feed: the farm's ETag for a 304 feed."""
    return feed_etag(group, index) if group.kinds[index] == "304" else None


def aiohttp_bare(port: int, group: Group, seconds: float) -> int:
    """``run.py``'s floor loop (``bare_loop``): one session, ``IN_FLIGHT`` in flight, keep-alive."""
    done, _ = bare_loop(port, group, seconds, IN_FLIGHT)
    return done


def service(port: int, group: Group, seconds: float) -> int:
    """The service's fetch as a feeds worker calls it: ``fetch_all`` on a batch at a time."""
    config = FetchConfig(
        user_agent="feedwatch-bench",
        connect_timeout=10,
        read_timeout=10,
        deadline=30,
        max_bytes=10 << 20,
        max_redirects=5,
        concurrency=IN_FLIGHT,
        per_host=IN_FLIGHT,
    )
    policy = AddressPolicy(allow_private=True)
    done, start = 0, 0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        requests = []
        for i in range(start, start + BATCH):
            index = i % group.feeds
            url = farm_url(port, group.name, index, group.hosts)
            requests.append(FetchRequest(url=url, etag=_etag(group, index), key=index))
        results = fetch_all(requests, config, policy)
        failed = [r for r in results if isinstance(r, FetchError)]
        if failed:
            raise RuntimeError(f"service fetch failed: {failed[0]!r}")
        done += len(results)
        start += BATCH
    return done


def pycurl_bare(port: int, group: Group, seconds: float) -> int:
    """libcurl's multi interface: ``IN_FLIGHT`` easy handles, each reused for its next request
    (keep-alive through the multi handle's connection cache), bodies into memory."""
    import pycurl  # type: ignore[import-not-found,import-untyped,unused-ignore]

    i = 0

    def start(handle: Any) -> None:
        nonlocal i
        index = i % group.feeds
        i += 1
        handle.setopt(pycurl.URL, farm_url(port, group.name, index, group.hosts))
        etag = _etag(group, index)
        handle.setopt(pycurl.HTTPHEADER, [f"If-None-Match: {etag}"] if etag else [])
        handle.setopt(pycurl.WRITEDATA, io.BytesIO())

    return _drive([pycurl.Curl() for _ in range(IN_FLIGHT)], start, lambda handle: None, seconds)


def _drive(
    handles: list[Any], start: Callable[[Any], None], finish: Callable[[Any], None], seconds: float
) -> int:
    """libcurl's multi loop over ``handles``: each is set up by ``start`` and added; a finished
    one is handed to ``finish`` and started again until ``seconds`` have passed. Returns the
    requests done; a failed transfer raises."""
    import pycurl  # type: ignore[import-not-found,import-untyped,unused-ignore]

    multi = pycurl.CurlMulti()
    done = 0
    stop = time.monotonic() + seconds
    for handle in handles:
        start(handle)
        multi.add_handle(handle)
    running = len(handles)
    while running:
        while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
            pass
        while True:
            queued, finished, failed = multi.info_read()
            for handle in finished:
                multi.remove_handle(handle)
                finish(handle)
                done += 1
                if time.monotonic() < stop:
                    start(handle)
                    multi.add_handle(handle)
                else:
                    running -= 1
            for _handle, _errno, message in failed:
                raise RuntimeError(f"pycurl: {message}")
            if not queued:
                break
        if running:
            multi.select(1.0)
    for handle in handles:
        handle.close()
    multi.close()
    return done


Client = Callable[[int, Group, float], int]


def measure(client: Client, port: int, group: Group, farm_pid: int, seconds: float) -> dict[str, float]:
    cpu, farm = time.process_time(), proc_cpu(farm_pid)
    started = time.monotonic()
    done = client(port, group, seconds)
    elapsed = time.monotonic() - started
    cpu, farm = time.process_time() - cpu, proc_cpu(farm_pid) - farm
    return {
        "requests_per_s": round(done / elapsed, 1),
        "client_cpu_ms_per_request": round(1000 * cpu / done, 4),
        "farm_cpu_ms_per_request": round(1000 * farm / done, 4),
    }


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    # As in a Celery pool process, SIGINT is not Python's default handler: with it, every
    # asyncio.Runner.run (the aiohttp loop's; the service's fetch ran on one until round 18)
    # swaps in a handler holding its task and, on the way out, signal.signal() builds that
    # handler's repr (the task's, with its result) to find it is no Handlers member.
    signal.signal(signal.SIGINT, _interrupt)
    raise_mmap_threshold()  # as a worker's allocator is: a fresh script would mmap every read
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--feeds", type=int, default=2_000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mix", default="304=0.7,unchanged=0.2,new=0.1", help="the farm's kinds and shares")
    args = parser.parse_args(argv)

    clients: dict[str, Client] = {
        "aiohttp_bare": aiohttp_bare,
        "service": service,
        "pycurl_bare": pycurl_bare,
    }
    mix = parse_mix(args.mix)
    config = {"groups": {"poll": {"feeds": args.feeds, "mix": mix, "items": 50, "new_items": 2}}}
    (group,) = groups_from_config(config)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in clients}
    with tempfile.TemporaryDirectory(prefix="fw-clients-") as tmp, contextlib.ExitStack() as stack:
        port, farm = stack.enter_context(farm_process(config, Path(tmp)))
        for client in clients.values():  # warm: every connection made, every body rendered once
            client(port, group, 1.0)
        for _ in range(args.rounds):
            for name, client in clients.items():
                runs[name].append(measure(client, port, group, farm.pid, args.seconds))
                print(f"[clients] {name}: {runs[name][-1]}", file=sys.stderr, flush=True)
    best = {name: min(r, key=lambda m: m["client_cpu_ms_per_request"]) for name, r in runs.items()}
    base = best["aiohttp_bare"]["client_cpu_ms_per_request"]
    out: dict[str, Any] = {
        "feeds": args.feeds,
        "mix": mix,
        "in_flight": IN_FLIGHT,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "best": best,
        "runs": runs,
        "client_cpu_ratio_to_aiohttp_bare": {
            name: round(b["client_cpu_ms_per_request"] / base, 3) for name, b in best.items()
        },
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
