"""Kept connections: reused for the same host name only, never after a response left unfinished.

A raw HTTP/1.1 server on loopback counts the connections it accepts and the Host names each one
carried, and can append junk or a forged second response to an answer.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col
from support.fetching import fetch_config

from feedwatch import db, pipeline, store
from feedwatch.fetch import (
    AddressPolicy,
    FetchConfig,
    FetchError,
    FetchRequest,
    FetchResult,
    client,
    fetch_all,
)
from feedwatch.models import Feed
from feedwatch.settings import Settings
from feedwatch.sources import FeedSpec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

# One fetch at a time per host: a second connection means the first was not kept.
CONFIG = fetch_config(max_bytes=1024, concurrency=4, per_host=1)
POLICY = AddressPolicy(allow_private=True)
FEED = b"<rss version='2.0'><channel><title>feed</title></channel></rss>"
OTHER = b"<rss version='2.0'><channel><title>other</title></channel></rss>"


def response(body: bytes, status: str = "200 OK", content_type: str = "application/rss+xml") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def chunked(body: bytes, size: int = 256) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nTransfer-Encoding: chunked\r\n\r\n"
    parts = [
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)
    ]
    return head + b"".join(parts) + b"0\r\n\r\n"


def cut(head: str, sent: bytes) -> bytes:
    """An answer that stops mid-body: the server then waits for the client to go."""
    return f"HTTP/1.1 {head}\r\n\r\n".encode() + sent


# path -> (answer, bytes sent in a second write after it)
ROUTES: dict[str, tuple[bytes, bytes]] = {
    "/feed": (response(FEED), b""),
    "/other": (response(OTHER), b""),
    # complete answers the fetcher refuses: on the wire each ended where it said it would
    "/error": (response(b"oops", "500 Internal Server Error", "text/plain"), b""),
    "/declared-big": (response(b"x" * 2000), b""),
    "/wire-big": (chunked(b"<rss>" + b"x" * 4000), b""),
    "/image": (response(b"\x89PNG", content_type="image/png"), b""),
    # the same, cut off: the rest of the body is still owed on the connection
    "/error-cut": (cut("500 Oops\r\nContent-Length: 5000", b"o" * 100), b""),
    "/declared-big-cut": (cut("200 OK\r\nContent-Length: 100000", b"x" * 2000), b""),
    "/wire-big-cut": (chunked(b"<rss>" + b"x" * 4000)[: -len(b"0\r\n\r\n")], b""),
    "/image-cut": (cut("200 OK\r\nContent-Type: image/png\r\nContent-Length: 5000", b"i" * 100), b""),
    # bytes after a complete answer
    "/junk": (response(FEED) + b"\x00\x01 garbage\r\n\r\n", b""),
    "/forged": (response(FEED) + response(FEED), b""),  # a second, unasked-for answer
    "/forged-later": (response(FEED), response(FEED)),
    # an origin's round (test_an_origin_s_round_is_polled_on_one_connection)
    **{f"/round/{k}": (response(FEED), b"") for k in range(3)},
}


@dataclass
class CountingServer:
    """Keep-alive HTTP/1.1 on one loopback address; closes a connection only when the client does."""

    host: str = "127.0.0.1"
    port: int = 0
    hosts_per_connection: list[set[str]] = field(default_factory=list)
    send_later: threading.Event = field(default_factory=threading.Event)  # set by the test
    sent_later: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._listener = socket.create_server((self.host, self.port))
        self.port = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def accepted(self) -> int:
        return len(self.hosts_per_connection)

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            seen: set[str] = set()
            self.hosts_per_connection.append(seen)
            threading.Thread(target=self._serve, args=(conn, seen), daemon=True).start()

    def _serve(self, conn: socket.socket, seen: set[str]) -> None:
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    buffer += data
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                seen.update(
                    line.split(":", 1)[1].strip() for line in lines[1:] if line.lower().startswith("host:")
                )
                answer, later = ROUTES[path]
                try:
                    conn.sendall(answer)
                    if later and self.send_later.wait(10):
                        conn.sendall(later)
                        self.sent_later.set()
                except OSError:
                    return

    def stop(self) -> None:
        self._listener.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


@pytest.fixture
def server() -> Iterator[CountingServer]:
    srv = CountingServer()
    yield srv
    srv.stop()


def fetch(*urls: str, config: FetchConfig = CONFIG) -> list[FetchResult | FetchError]:
    return fetch_all([FetchRequest(url=u) for u in urls], config, POLICY)


def body_of(outcome: FetchResult | FetchError) -> bytes | None:
    return outcome.body if isinstance(outcome, FetchResult) else None


def test_batches_to_one_host_reuse_one_connection(server: CountingServer) -> None:
    first = fetch(*[server.url("/feed")] * 3)
    second = fetch(server.url("/feed"), server.url("/other"))
    assert [body_of(o) for o in first + second] == [FEED, FEED, FEED, FEED, OTHER]
    assert server.accepted == 1


REFUSED = [
    ("/error", "http_5xx"),
    ("/declared-big", "too_large"),
    ("/wire-big", "too_large"),
    ("/image", "not_a_feed"),
]


@pytest.mark.parametrize(("path", "error_class"), [(p + "-cut", e) for p, e in REFUSED])
def test_a_response_cut_off_closes_its_connection(
    server: CountingServer, path: str, error_class: str
) -> None:
    (failed,) = fetch(server.url(path))
    assert isinstance(failed, FetchError) and failed.error_class == error_class
    assert [body_of(o) for o in fetch(server.url("/feed"))] == [FEED]
    assert server.accepted == 2  # the failed fetch's connection went away, not to the pool


@pytest.mark.parametrize(("path", "error_class"), REFUSED)
def test_a_refused_complete_response_leaves_a_clean_connection(
    server: CountingServer, path: str, error_class: str
) -> None:
    # aiohttp hands a connection back once the answer's last byte is parsed, read or not: it is
    # then between two messages, and the next fetch on it gets its own answer.
    (failed,) = fetch(server.url(path))
    assert isinstance(failed, FetchError) and failed.error_class == error_class
    assert [body_of(o) for o in fetch(server.url("/feed"), server.url("/other"))] == [FEED, OTHER]


@pytest.mark.parametrize("path", ["/junk", "/forged", "/forged-later"])
def test_bytes_after_an_answer_never_reach_the_next_fetch(server: CountingServer, path: str) -> None:
    (first,) = fetch(server.url(path))
    assert isinstance(first, FetchError) or first.body == FEED
    if path == "/forged-later":  # sent while the pooled connection sits idle, the loop stopped
        server.send_later.set()
        assert server.sent_later.wait(5)
        time.sleep(0.05)  # settle on loopback; not a measurement
    (following,) = fetch(server.url("/other"))
    # never the forged FEED: the dirty connection is closed and the request sent on a new one
    assert isinstance(following, FetchResult) and following.body == OTHER
    assert server.accepted == 2
    assert [body_of(o) for o in fetch(server.url("/other"))] == [OTHER]


def test_two_host_names_on_one_address_never_share_a_connection(server: CountingServer) -> None:
    urls = [server.url("/feed", host) for host in ("127.0.0.1", "localhost")] * 2
    for _ in range(2):
        assert [body_of(o) for o in fetch(*urls)] == [FEED] * 4
    assert all(len(hosts) == 1 for hosts in server.hosts_per_connection)
    assert {h for hosts in server.hosts_per_connection for h in hosts} == {
        f"127.0.0.1:{server.port}",
        f"localhost:{server.port}",
    }


def test_idle_connections_beyond_the_bound_are_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    servers = [CountingServer(f"127.0.0.{i}") for i in (1, 2, 3)]
    try:
        monkeypatch.setattr(client, "MAX_IDLE", 1)
        # A config of its own, so that its connections share a pool with no earlier test's.
        config = replace(CONFIG, user_agent="feedwatch-tests/idle-bound")
        urls = [s.url("/feed") for s in servers]
        for _ in range(2):
            assert [body_of(o) for o in fetch(*urls, config=config)] == [FEED] * 3
        assert sum(s.accepted for s in servers) == 5  # one of three kept after the first batch
    finally:
        for s in servers:
            s.stop()


def test_a_forked_child_never_uses_its_parents_connections(server: CountingServer) -> None:
    assert [body_of(o) for o in fetch(server.url("/feed"))] == [FEED]
    pid = os.fork()
    if pid == 0:
        ok = [body_of(o) for o in fetch(server.url("/feed"))] == [FEED]
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert server.accepted == 2  # the child opened its own
    assert [body_of(o) for o in fetch(server.url("/feed"))] == [FEED]
    assert server.accepted == 2  # and the parent's kept connection survived the child


def test_an_origin_s_round_is_polled_on_one_connection(
    server: CountingServer, pipeline_settings: Settings
) -> None:
    """A due feed and two of its origin's that fall due soon: the tick sends them in one batch
    (``test_rounds``), and the batch's requests, paced apart as a host's are, share one kept
    connection: one handshake where three polls on their own schedules would each open one."""
    settings = pipeline_settings.model_copy(update={"per_host_min_gap_seconds": 0.2, "poll_min_batches": 1})
    now = datetime.now(UTC)
    published: list[list[int]] = []
    ctx = pipeline.Context(settings, clock=lambda: now, rng=random.Random(7), publish_poll=published.append)
    urls = [server.url(f"/round/{k}") for k in range(3)]
    with db.session_scope(settings) as session:
        store.sync_feeds(session, [FeedSpec(url=u) for u in urls], now)
        session.execute(
            update(Feed)
            .where(col(Feed.url) != urls[0])
            .values(next_check_at=now + timedelta(seconds=20), last_polled_at=now - timedelta(minutes=10))
        )
    pipeline.tick(ctx)
    assert [len(batch) for batch in published] == [3]
    reports = pipeline.poll_feeds(ctx, published[0])
    assert [r.outcome for r in reports] == ["ok"] * 3
    assert server.accepted == 1
