"""fetch_all keeps one event loop per process: reused across batches, new after a fork."""

from __future__ import annotations

import os
from collections.abc import Iterator

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

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

CONFIG = fetch_config()
FEED = b"<rss version='2.0'><channel><title>t</title></channel></rss>"


@pytest.fixture(scope="module")
def server() -> Iterator[FeedServer]:
    srv = FeedServer().start()
    srv.routes["/feed"] = Route(body=FEED, content_type="application/rss+xml")
    yield srv
    srv.stop()


def _fetch(server: FeedServer, policy: AddressPolicy) -> list[FetchResult | FetchError]:
    return fetch_all([FetchRequest(url=server.url("/feed"))] * 3, CONFIG, policy)


def test_batches_share_one_loop_and_keep_the_guard(server: FeedServer) -> None:
    allowed = AddressPolicy(allowed=frozenset({("127.0.0.1", server.port)}))
    assert all(isinstance(r, FetchResult) and r.status == 200 for r in _fetch(server, allowed))
    runner = client._LOOPS.runner
    assert runner is not None
    assert all(isinstance(r, FetchResult) for r in _fetch(server, allowed))
    assert client._LOOPS.runner is runner  # the same loop served the second batch
    refused = _fetch(server, AddressPolicy())  # loopback is not public: the reused loop still refuses
    assert all(isinstance(r, FetchError) and r.error_class == "blocked_address" for r in refused)


def test_a_forked_child_makes_its_own_loop(server: FeedServer) -> None:
    allowed = AddressPolicy(allowed=frozenset({("127.0.0.1", server.port)}))
    _fetch(server, allowed)  # the parent has a loop before the fork, like a warmed Celery parent
    parent = client._LOOPS.runner
    pid = os.fork()
    if pid == 0:  # child: exit code says whether it fetched on a loop of its own
        ok = all(isinstance(r, FetchResult) for r in _fetch(server, allowed))
        os._exit(0 if ok and client._LOOPS.runner is not parent else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_an_interrupted_batch_discards_the_loop() -> None:
    async def interrupted() -> None:
        raise TimeoutError("soft time limit")  # like Celery's signal handler raising mid-batch

    client._LOOPS.get()
    with pytest.raises(TimeoutError):
        client._LOOPS.run(interrupted())
    assert client._LOOPS.runner is None
