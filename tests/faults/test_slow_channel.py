"""A slow alert channel must not stop polling.

The beat's ticks go to the ``default`` queue. If only the alerts worker consumed it, a channel
that hangs (a webhook that accepts and never answers) would hold every alerts process inside
``deliver_alert``, each tick would wait behind them and expire, and no feed would be claimed
until the sends gave up: a burst of news on a slow channel would stop the news. The queues are
read from docker-compose.yml, so this holds the deployment's layout: the feeds worker consumes
``default`` too, and a tick runs on whichever pool has a free process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support.faults import GatedFeedServer, story_feed
from support.feeds import write_feeds_toml
from support.services import compose_queues, wait_for
from support.stack import PATIENT, Stack

from feedwatch.models import Feed

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(180)]

NAMES = ("a", "b", "c")


class HangingReceiver:
    """A webhook receiver that reads each request and answers only once released."""

    def __init__(self) -> None:
        self.requests = 0
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.requests += 1
                receiver.release.wait(120)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[HangingReceiver]:
    hanging = HangingReceiver()
    hanging.thread.start()
    yield hanging
    hanging.stop()


def test_a_hanging_channel_does_not_stop_the_ticks(
    tmp_path: Path,
    feed_server: GatedFeedServer,
    receiver: HangingReceiver,
    broker: str,
    pg_url: str,
    stacks: list[Stack],
) -> None:
    for name in NAMES:
        feed_server.bodies[f"/{name}.xml"] = story_feed(name)
    paths = [f"/{name}.xml" for name in NAMES]
    feeds = write_feeds_toml(
        tmp_path / "feeds.toml", [feed_server.url(p) for p in paths], interval_minutes=60
    )
    channels = tmp_path / "channels.toml"
    channels.write_text(
        f'[[channels]]\nname = "hook"\ntype = "webhook"\nurl = "{receiver.url}"\ntimeout = 110\n'
    )
    # Time limits and leases longer than the hang, so nothing gives up during the test.
    stack = Stack(
        tmp_path,
        feeds,
        pg_url,
        FEEDWATCH_BROKER_URL=broker,
        FEEDWATCH_CHANNELS_FILE=str(channels),
        FEEDWATCH_DELIVERY_LEASE_SECONDS="600",
        **PATIENT,
    )
    stacks.append(stack)
    alerts = stack.worker(
        "--no-beat", "-Q", compose_queues("worker-alerts"), "-c", "1", "--articles-pool", "0"
    )
    wait_for(lambda: "ready" in alerts.output(), 60, "the alerts worker", alerts)
    feeds_worker = stack.worker(
        "--no-beat", "--no-prepare", "-Q", compose_queues("worker-feeds"), "-c", "1", "--articles-pool", "0"
    )
    wait_for(lambda: "ready" in feeds_worker.output(), 60, "the feeds worker", feeds_worker)
    stack.beat()
    wait_for(lambda: all(feed_server.hits[p] >= 1 for p in paths), 60, "the first polls", feeds_worker)
    wait_for(lambda: receiver.requests >= 1, 60, "a delivery to hang in the channel", alerts)

    # A fetched feed's poll may not have written its state yet: its write would set the next
    # check an hour out again, over the UPDATE below. Wait for every poll to report.
    wait_for(
        lambda: all(f.claimed_at is None and f.last_polled_at is not None for f in stack.rows(Feed)),
        30,
        "the first polls recorded",
        feeds_worker,
    )
    # The alerts worker's only process is stuck in the send; every feed falls due again.
    stack.execute("UPDATE feed SET next_check_at = now()")
    wait_for(
        lambda: all(feed_server.hits[p] >= 2 for p in paths),
        30,
        "polls while the channel hangs",
        feeds_worker,
    )
    assert receiver.requests == 1, "the channel is still hanging on its first request"

    receiver.release.set()
    stack.wait_delivered(len(NAMES), alerts, timeout=60)
