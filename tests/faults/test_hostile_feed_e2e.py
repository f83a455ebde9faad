"""Hostile feeds under a real worker: one classified failure each, bounded memory, others flow.

``feedwatch run`` (Redis broker on db 5, a fresh PostgreSQL database) polls four good feeds
carrying distinct rule-matching stories and eight hostile ones from ``support.hostile_server``
(gzip bomb, endless body, slowloris, redirect loop, an HTML page, 410, 429 with Retry-After and
a redirect to ``file://``). Loopback needs FEEDWATCH_ALLOW_PRIVATE_NETWORKS=true here, so the
SSRF refusal itself is shown on a ``feedwatch ingest`` process without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.faults import STORIES, children, jsonl, story_feed
from support.hostile_server import HostileServer
from support.services import FeedServer, Route, feedwatch_cmd, redis_url, service_env, wait_for
from support.stack import Stack

from feedwatch.models import Feed, FeedState

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(180)]

REDIS_DB = 5
GOOD = ("a", "b", "c", "d")
HOSTILE = {  # path → the class its one failure must carry
    "/gzip-bomb": "too_large",
    "/endless": "too_large",
    "/slowloris": "timeout",
    "/loop-a": "too_many_redirects",
    "/html": "not_a_feed",
    "/gone": "gone",
    "/rate-limited": "http_429",
    "/to-file": "blocked_address",  # file:// is refused even where private networks are allowed
}
RSS_BOUND_MB = 500


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


@pytest.fixture
def good() -> Iterator[FeedServer]:
    server = FeedServer().start()
    for name in GOOD:
        server.routes[f"/{name}.xml"] = Route(story_feed(name))
    yield server
    server.stop()


def _feeds_toml(path: Path, urls: list[str]) -> Path:
    # Once an hour, pinned: every feed is polled exactly once during the test.
    blocks = [f'[[feeds]]\nurl = "{u}"\ninterval_minutes = 60\nmin_interval_minutes = 60\n' for u in urls]
    path.write_text("\n".join(blocks))
    return path


def _tree_rss_mb(root: int) -> dict[int, float]:
    """Resident memory (MB) of ``root`` and every descendant, read from /proc."""
    found: dict[int, float] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        found[pid] = kb / 1024
        todo += children(pid)
    return found


class RssSampler(threading.Thread):
    """Peak RSS of any one process of the worker's tree, sampled every 0.1 s."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root, self.peak, self.done = root, 0.0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            self.peak = max([self.peak, *_tree_rss_mb(self.root).values()])


def test_hostile_feeds_cost_one_classified_failure_each(
    tmp_path: Path, hostile: HostileServer, good: FeedServer, pg_url: str, stacks: list[Stack]
) -> None:
    urls = [good.url(f"/{n}.xml") for n in GOOD] + [hostile.url(p) for p in HOSTILE]
    feeds = _feeds_toml(tmp_path / "feeds.toml", urls)
    env = {
        "FEEDWATCH_BROKER_URL": redis_url(REDIS_DB),
        "FEEDWATCH_FETCH_DEADLINE": "5",  # the slowloris trickles forever: the deadline ends it
        # A batch waits for its slowest fetch (the deadline): limits and lease well above it.
        "FEEDWATCH_TASK_SOFT_TIME_LIMIT": "60",
        "FEEDWATCH_TASK_HARD_TIME_LIMIT": "90",
        "FEEDWATCH_CLAIM_LEASE_SECONDS": "120",
    }
    stack = Stack(tmp_path, feeds, pg_url, **env)
    stacks.append(stack)
    worker = stack.worker("-c", "2", "--articles-pool", "0")
    wait_for(lambda: len(children(worker.pid)) >= 2, 60, "the worker's pool", worker)
    baseline = max(_tree_rss_mb(worker.pid).values())
    sampler = RssSampler(worker.pid)
    sampler.start()

    def by_path() -> dict[str, Feed]:
        return {f.config_url.split(str(hostile.port), 1)[-1]: f for f in stack.feeds()}

    def all_failed() -> bool:
        rows = by_path()
        return all(getattr(rows.get(p), "error_class", None) for p in HOSTILE)

    try:
        wait_for(all_failed, 90, "every hostile feed's failure", worker)
        stack.wait_delivered(len(GOOD), worker)
        time.sleep(3)  # a few more ticks (one a second): none may poll a feed again
    finally:
        sampler.done.set()
        sampler.join()
    after = max(_tree_rss_mb(worker.pid).values())
    print(
        f"\nworker RSS, largest process: {baseline:.0f} MB at start,"
        f" peak {sampler.peak:.0f} MB, {after:.0f} MB after"
    )

    rows = by_path()
    for path, error_class in HOSTILE.items():
        feed = rows[path]
        expected_state = FeedState.DISABLED if error_class == "gone" else FeedState.BACKING_OFF
        assert (feed.error_class, feed.total_errors, feed.state) == (error_class, 1, expected_state), (
            path,
            feed.error_message,
        )
    assert worker.alive()
    assert sampler.peak < RSS_BOUND_MB
    lines = jsonl(stack.alerts_file)
    assert sorted(line["title"] for line in lines) == sorted(STORIES[n][0] for n in GOOD)
    assert set(stack.lines_per_key().values()) == {1}
    assert all(good.hits[f"/{n}.xml"] == 1 for n in GOOD)


def test_ssrf_refused_without_the_private_network_switch(tmp_path: Path, hostile: HostileServer) -> None:
    env = service_env(tmp_path / "home")
    env.pop("FEEDWATCH_ALLOW_PRIVATE_NETWORKS")  # the default: loopback and private are refused
    cmd = feedwatch_cmd("ingest", "--dry-run", "--json", hostile.url("/feed"))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, cwd=os.getcwd())
    assert done.returncode != 0
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["error_class"] == "blocked_address", report
    assert hostile.requests == []  # refused before a connection was made
