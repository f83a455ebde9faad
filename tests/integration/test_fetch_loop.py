"""fetch_all keeps one libcurl session per (config, policy) in each process and thread: reused
across batches, new after a fork, dropped when a batch is interrupted."""

from __future__ import annotations

import gzip
import os
import resource
import signal
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import FrameType

import pytest
from support.fetching import fetch_config
from support.services import FeedServer, Route

from feedwatch.fetch import (
    AddressPolicy,
    FetchError,
    FetchRequest,
    FetchResult,
    client,
    fetch_all,
)
from feedwatch.fetch.body import BodyDecoder

try:
    from support.hostile_server import HostileServer
except ImportError:  # run without a conftest that puts tests/ on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from support.hostile_server import HostileServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

CONFIG = fetch_config()
FEED = b"<rss version='2.0'><channel><title>t</title></channel></rss>"


class Interrupted(BaseException):
    """What Celery's soft time limit is to a batch: raised from outside, not a fetch failure."""


@pytest.fixture(scope="module")
def server() -> Iterator[FeedServer]:
    srv = FeedServer().start()
    srv.routes["/feed"] = Route(body=FEED, content_type="application/rss+xml")
    yield srv
    srv.stop()


def _fetch(server: FeedServer, policy: AddressPolicy) -> list[FetchResult | FetchError]:
    return fetch_all([FetchRequest(url=server.url("/feed"))] * 3, CONFIG, policy)


def _session(policy: AddressPolicy) -> client._Session | None:
    sessions = client._SESSIONS.sessions or {}
    return sessions.get((CONFIG, policy))


def test_batches_share_one_session_and_keep_the_guard(server: FeedServer) -> None:
    allowed = AddressPolicy(allowed=frozenset({("127.0.0.1", server.port)}))
    assert all(isinstance(r, FetchResult) and r.status == 200 for r in _fetch(server, allowed))
    session = _session(allowed)
    assert session is not None
    assert all(isinstance(r, FetchResult) for r in _fetch(server, allowed))
    assert _session(allowed) is session  # the same session served the second batch
    refused = _fetch(server, AddressPolicy())  # loopback is not public: a session per policy
    assert all(isinstance(r, FetchError) and r.error_class == "blocked_address" for r in refused)
    assert _session(AddressPolicy()) is not session


def test_a_forked_child_makes_its_own_session(server: FeedServer) -> None:
    allowed = AddressPolicy(allowed=frozenset({("127.0.0.1", server.port)}))
    _fetch(server, allowed)  # the parent has a session before the fork, like a warmed Celery parent
    parent = _session(allowed)
    pid = os.fork()
    if pid == 0:  # child: exit code says whether it fetched on a session of its own
        ok = all(isinstance(r, FetchResult) for r in _fetch(server, allowed))
        os._exit(0 if ok and _session(allowed) not in (None, parent) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _session(allowed) is parent  # the parent's session survived the child


def test_a_signal_during_a_batch_leaves_fetch_all_and_drops_the_session() -> None:
    """A handler raising mid-batch (Celery's soft time limit) is not swallowed, and the batch's
    half-done connections go with its session."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise Interrupted

    with HostileServer() as srv:
        policy = AddressPolicy(allowed=frozenset({("127.0.0.1", srv.port)}))
        config = replace(CONFIG, deadline=10.0, read_timeout=10.0)
        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.5)
            with pytest.raises(Interrupted):
                fetch_all([FetchRequest(srv.url("/slowloris"))], config, policy)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        assert (config, policy) not in (client._SESSIONS.sessions or {})
        (after,) = fetch_all([FetchRequest(srv.url("/feed"))], config, policy)
        assert isinstance(after, FetchResult), after


def test_an_exception_raised_inside_a_libcurl_callback_leaves_fetch_all(
    server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libcurl calls our code for every body chunk; an exception that is not a fetch failure
    raised there must reach the caller, not be printed and dropped by pycurl."""

    class Exploding(BodyDecoder):
        def feed(self, data: bytes) -> None:
            raise Interrupted

    monkeypatch.setattr(client, "BodyDecoder", Exploding)
    allowed = AddressPolicy(allowed=frozenset({("127.0.0.1", server.port)}))
    config = replace(CONFIG, user_agent="feedwatch-tests/exploding")
    with pytest.raises(Interrupted):
        fetch_all([FetchRequest(url=server.url("/feed"))], config, allowed)
    assert (config, allowed) not in (client._SESSIONS.sessions or {})


def test_a_body_failing_at_its_last_bytes_costs_only_its_fetch(
    server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decoder's final flush can still refuse a body (the cap, a bad stream's end): that
    fetch fails, classified; the batch and its session go on."""
    body = FEED + b"<!-- fail -->"
    server.routes["/last-bytes-fail"] = Route(body=body, content_type="application/rss+xml")

    class FailingAtTheEnd(BodyDecoder):
        def finish(self) -> bytes:
            body = super().finish()
            assert isinstance(body, bytes)  # no memory bound in this batch
            if body.endswith(b"<!-- fail -->"):
                raise FetchError("too_large", "over the cap at the last bytes")
            return body

    monkeypatch.setattr(client, "BodyDecoder", FailingAtTheEnd)
    allowed = AddressPolicy(allowed=frozenset({("127.0.0.1", server.port)}))
    config = replace(CONFIG, user_agent="feedwatch-tests/last-bytes")
    bad, good = fetch_all(
        [FetchRequest(url=server.url("/last-bytes-fail")), FetchRequest(url=server.url("/feed"))],
        config,
        allowed,
    )
    assert isinstance(bad, FetchError) and bad.error_class == "too_large", bad
    assert isinstance(good, FetchResult) and good.body == FEED, good
    assert (config, allowed) in (client._SESSIONS.sessions or {})


def test_bodies_past_the_batchs_memory_bound_wait_in_temporary_files(server: FeedServer) -> None:
    """``hold_bytes``: six feeds of ~40 KB (one sent gzipped) against a bound of 100 KB. At most
    two bodies stay in memory; the others come back with an empty ``body`` and a file, and every
    one reads back as it was served (``FetchResult.loaded``)."""
    bodies = [FEED[:-18] + f"<!-- {n} -->".encode() * 4000 + FEED[-18:] for n in range(6)]
    for n, body in enumerate(bodies):
        gzipped = n == 3
        server.routes[f"/bound-{n}"] = Route(
            body=gzip.compress(body) if gzipped else body,
            headers={"Content-Encoding": "gzip"} if gzipped else {},
        )
    allowed = AddressPolicy(allowed=frozenset({("127.0.0.1", server.port)}))
    requests = [FetchRequest(url=server.url(f"/bound-{n}")) for n in range(6)]
    results = fetch_all(requests, CONFIG, allowed, hold_bytes=100_000)
    assert all(isinstance(r, FetchResult) for r in results), results
    done = [r for r in results if isinstance(r, FetchResult)]
    spilled = [r.spilled is not None for r in done]
    assert sum(spilled) >= 4, spilled
    assert [r.size for r in done] == [len(b) for b in bodies]
    assert all(r.body == b"" for r in done if r.spilled is not None)
    assert [r.loaded().body for r in done] == bodies
    assert all(r.spilled.file.closed for r in done if r.spilled is not None)


def test_a_binary_body_past_the_bound_is_refused_from_its_file(server: FeedServer) -> None:
    """The not-a-feed test reads a spilled body's first bytes from its file; the refused body's
    file is closed at once."""
    png_body = b"\x89PNG\r\n" + bytes(5000)
    server.routes["/bound-png"] = Route(body=png_body, content_type="application/octet-stream")
    allowed = AddressPolicy(allowed=frozenset({("127.0.0.1", server.port)}))
    png, feed = fetch_all(
        [FetchRequest(url=server.url("/bound-png")), FetchRequest(url=server.url("/feed"))],
        CONFIG,
        allowed,
        hold_bytes=1,
    )
    assert isinstance(png, FetchError) and png.error_class == "not_a_feed", png
    assert isinstance(feed, FetchResult) and feed.spilled is not None and feed.loaded().body == FEED


def test_connections_on_descriptors_past_1023_are_served(server: FeedServer) -> None:
    """A worker with many files open puts its connections on high descriptor numbers, past
    what an ``fd_set`` holds; the fetch must serve them as any other (it does: measured, not
    assumed, in round 18)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1400:
        pytest.skip(f"the hard limit on open files is {hard}")
    allowed = AddressPolicy(allowed=frozenset({("127.0.0.1", server.port)}))
    config = replace(CONFIG, user_agent="feedwatch-tests/high-fds")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1400), hard))
    filler = []
    try:
        while len(filler) < 1100:
            filler.append(os.open(os.devnull, os.O_RDONLY))
        outcomes = fetch_all([FetchRequest(url=server.url("/feed"))] * 3, config, allowed)
        assert all(isinstance(o, FetchResult) and o.body == FEED for o in outcomes), outcomes
        session = (client._SESSIONS.sessions or {})[(config, allowed)]
        assert min(fd for fd in session.sockets.values() if fd is not None) > 1023
    finally:
        for fd in filler:
            os.close(fd)
        session = (client._SESSIONS.sessions or {}).get((config, allowed))
        if session is not None:  # its connections sit on the high numbers: close them now
            client._SESSIONS.discard(session)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_redirect_waiting_on_a_held_host_fails_at_its_deadline_and_frees_the_batch(
    server: FeedServer,
) -> None:
    """One global slot, one slot a host. The first fetch starts and is redirected to a host
    whose slot the second fetch holds while it waits for the global slot the first one has:
    the redirect waits (its deadline running) until the deadline fails it, which frees the
    global slot, and the second fetch then runs as any other."""
    server.routes["/to-localhost"] = Route(
        body=b"", status=302, headers={"Location": f"http://localhost:{server.port}/feed"}
    )
    allowed = AddressPolicy(allowed=frozenset({("127.0.0.1", server.port)}))
    config = replace(CONFIG, concurrency=1, per_host=1, deadline=1.0, user_agent="feedwatch-tests/stalled")
    redirected, waiting = fetch_all(
        [
            FetchRequest(url=server.url("/to-localhost")),
            FetchRequest(url=f"http://localhost:{server.port}/feed"),
        ],
        config,
        allowed,
    )
    assert isinstance(redirected, FetchError) and redirected.error_class == "timeout", redirected
    assert "redirect's host" in redirected.message
    assert [(r.status, r.target) for r in redirected.redirects] == [
        (302, f"http://localhost:{server.port}/feed")
    ]
    assert isinstance(waiting, FetchResult) and waiting.body == FEED, waiting
