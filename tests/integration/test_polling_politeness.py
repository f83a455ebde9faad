"""Per-host politeness: in-flight cap and a minimum gap between request starts, seen by the server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support.feeds import item, rss
from support.fetching import fetch_config

from feedwatch.fetch import AddressPolicy, FetchConfig, FetchRequest, FetchResult, fetch_all
from feedwatch.fetch.client import HostPacer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

BODY = rss([item("g", "t", "x", "https://example.org/1")])


class CountingServer:
    """Records when each request arrived and the most requests it served at once."""

    def __init__(self, hold: float) -> None:
        self.arrivals: list[float] = []
        self.in_flight = self.most_in_flight = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with lock:
                    outer.arrivals.append(time.monotonic())
                    outer.in_flight += 1
                    outer.most_in_flight = max(outer.most_in_flight, outer.in_flight)
                time.sleep(hold)  # keep the request open, so concurrent ones overlap
                # Done before the first byte of the answer leaves: the client may start its next
                # request the moment it has read this one, before this thread runs again.
                with lock:
                    outer.in_flight -= 1
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("Content-Length", str(len(BODY)))
                self.end_headers()
                self.wfile.write(BODY)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[CountingServer]:
    srv = CountingServer(hold=0.3)
    yield srv
    srv.stop()


def config(per_host: int, gap: float) -> FetchConfig:
    return fetch_config(
        read_timeout=5.0, deadline=10.0, concurrency=50, per_host=per_host, per_host_min_gap=gap
    )


@pytest.mark.parametrize(("per_host", "gap"), [(2, 0.0), (4, 0.2)])
def test_one_host_is_not_hit_at_once(server: CountingServer, per_host: int, gap: float) -> None:
    requests = [FetchRequest(url=f"http://127.0.0.1:{server.port}/f{i}.xml") for i in range(8)]
    results = fetch_all(requests, config(per_host, gap), AddressPolicy(allow_private=True))
    assert all(isinstance(r, FetchResult) for r in results), results
    assert server.most_in_flight <= per_host
    gaps = [b - a for a, b in zip(server.arrivals, server.arrivals[1:], strict=False)]
    # A lower bound, not a timing measurement: starts are spaced by at least the gap (less a
    # little for the server's own scheduling of its threads).
    assert min(gaps) >= gap * 0.8, gaps


def test_pacer_spaces_one_host_and_leaves_others_alone() -> None:
    pacer = HostPacer()
    waits = [pacer.reserve("news.example", 0.5) for _ in range(3)]
    assert (
        waits[0] == 0
        and waits[1] == pytest.approx(0.5, abs=0.05)
        and waits[2] == pytest.approx(1.0, abs=0.05)
    )
    assert pacer.reserve("other.example", 0.5) == 0
    assert pacer.reserve("news.example", 0.0) == 0
