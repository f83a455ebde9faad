"""The fetcher against a hostile HTTP server on 127.0.0.1 (real sockets, real aiohttp).

Each case runs in a batch next to a well-behaved feed: the hostile URL must cost exactly one
classified failure and the good feed must still arrive. Nothing here asserts timings; the
pytest timeout only proves that nothing hangs.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from feedwatch.fetch import (
    AddressPolicy,
    FetchError,
    FetchRequest,
    FetchResult,
    fetch_all,
    fetch_one,
)

try:
    from support.fetching import fetch_config
    from support.hostile_server import ETAG, FEED, LAST_MODIFIED, HostileServer
except ImportError:  # run without a conftest that puts tests/ on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from support.fetching import fetch_config
    from support.hostile_server import ETAG, FEED, LAST_MODIFIED, HostileServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

CONFIG = fetch_config(user_agent="feedwatch-tests/0 (+https://example.invalid/)", concurrency=20, per_host=20)


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    with HostileServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def policy(server: HostileServer) -> AddressPolicy:
    """The server's own 127.0.0.1:port counts as public; every other loopback stays refused."""
    return AddressPolicy(allowed=frozenset({("127.0.0.1", server.port)}))


def _with_good_feed(
    server: HostileServer, policy: AddressPolicy, url: str, **kw: str
) -> FetchResult | FetchError:
    good = FetchRequest(server.url("/feed"), key="good")
    outcome, good_outcome = fetch_all([FetchRequest(url, key="bad", **kw), good], CONFIG, policy)
    assert isinstance(good_outcome, FetchResult), good_outcome
    assert good_outcome.body == FEED and good_outcome.request.key == "good"
    return outcome


@pytest.mark.parametrize(
    ("path", "error_class"),
    [
        ("/gzip-bomb", "too_large"),
        ("/endless", "too_large"),
        ("/huge-length", "too_large"),
        ("/lying-length-short", "protocol"),
        ("/slowloris", "timeout"),
        ("/slow-headers", "timeout"),
        ("/loop-a", "too_many_redirects"),
        ("/chain/10", "too_many_redirects"),
        ("/to-metadata", "blocked_address"),
        ("/to-localhost", "blocked_address"),
        ("/to-file", "blocked_address"),
        ("/no-location", "protocol"),
        ("/image", "not_a_feed"),
        ("/binary", "not_a_feed"),
        ("/gone", "gone"),
        ("/not-found", "http_4xx"),
        ("/rate-limited", "http_429"),
        ("/server-error", "http_5xx"),
        ("/unavailable", "http_5xx"),
        ("/huge-header", "protocol"),
        ("/many-headers", "protocol"),
        ("/garbage", "protocol"),
        ("/hang-up", "protocol"),
        ("/brotli", "protocol"),
    ],
)
def test_hostile_response_is_one_classified_failure(
    server: HostileServer, policy: AddressPolicy, path: str, error_class: str
) -> None:
    outcome = _with_good_feed(server, policy, server.url(path))
    assert isinstance(outcome, FetchError), outcome
    assert outcome.error_class == error_class, outcome.message
    assert outcome.request is not None and outcome.request.key == "bad"
    assert outcome.message


def test_retry_after_seconds(server: HostileServer, policy: AddressPolicy) -> None:
    outcome = _with_good_feed(server, policy, server.url("/rate-limited"))
    assert isinstance(outcome, FetchError)
    assert (outcome.status, outcome.retry_after) == (429, 120.0)


def test_retry_after_http_date(server: HostileServer, policy: AddressPolicy) -> None:
    outcome = _with_good_feed(server, policy, server.url("/unavailable"))
    assert isinstance(outcome, FetchError)
    assert outcome.status == 503
    assert outcome.retry_after is not None and 0 < outcome.retry_after <= 600


def test_redirect_loop_records_the_chain(server: HostileServer, policy: AddressPolicy) -> None:
    outcome = _with_good_feed(server, policy, server.url("/loop-a"))
    assert isinstance(outcome, FetchError)
    assert [(r.status, r.source, r.target) for r in outcome.redirects] == [
        (301, server.url("/loop-a"), server.url("/loop-b")),
        (302, server.url("/loop-b"), server.url("/loop-a")),
    ]


def test_redirect_to_private_address_is_refused_after_the_hop(
    server: HostileServer, policy: AddressPolicy
) -> None:
    outcome = _with_good_feed(server, policy, server.url("/to-localhost"))
    assert isinstance(outcome, FetchError)
    assert outcome.error_class == "blocked_address"
    assert outcome.redirects[0].target == f"http://localhost:{server.closed_port}/x"


def test_redirect_chain_within_limit_is_followed(server: HostileServer, policy: AddressPolicy) -> None:
    outcome = _with_good_feed(server, policy, server.url("/chain/2"))
    assert isinstance(outcome, FetchResult), outcome
    assert outcome.body == FEED and outcome.url == server.url("/feed")
    assert [r.status for r in outcome.redirects] == [301, 301, 301]
    assert outcome.permanent_redirect == server.url("/feed")


@pytest.mark.parametrize("path", ["/gzip-feed", "/deflate-feed"])
def test_compressed_feed_is_decoded(server: HostileServer, policy: AddressPolicy, path: str) -> None:
    outcome = _with_good_feed(server, policy, server.url(path))
    assert isinstance(outcome, FetchResult), outcome
    assert outcome.body == FEED and outcome.wire_bytes < len(FEED)


def test_html_is_left_to_the_parser(server: HostileServer, policy: AddressPolicy) -> None:
    outcome = _with_good_feed(server, policy, server.url("/html"))
    assert isinstance(outcome, FetchResult), outcome
    assert outcome.headers["content-type"].startswith("text/html")


def test_content_length_framing_bounds_a_body_that_overruns_it(
    server: HostileServer, policy: AddressPolicy
) -> None:
    # Bytes past Content-Length are either ignored or seen as a malformed next message,
    # depending on when they arrive; both are bounded and neither reads the endless tail.
    outcome = _with_good_feed(server, policy, server.url("/lying-length-long"))
    if isinstance(outcome, FetchResult):
        assert len(outcome.body) == 20
    else:
        assert outcome.error_class == "protocol"


@pytest.mark.parametrize(
    ("etag", "last_modified"), [(ETAG, None), (None, LAST_MODIFIED), (ETAG, LAST_MODIFIED)]
)
def test_conditional_get_gives_not_modified(
    server: HostileServer, policy: AddressPolicy, etag: str | None, last_modified: str | None
) -> None:
    kw = {k: v for k, v in (("etag", etag), ("last_modified", last_modified)) if v}
    outcome = _with_good_feed(server, policy, server.url("/feed"), **kw)
    assert isinstance(outcome, FetchResult), outcome
    assert (outcome.status, outcome.not_modified, outcome.body) == (304, True, b"")
    assert outcome.etag == ETAG


def test_first_fetch_returns_validators_and_sends_user_agent(
    server: HostileServer, policy: AddressPolicy
) -> None:
    result = fetch_one(FetchRequest(server.url("/feed?ua")), CONFIG, policy)
    assert (result.status, result.etag, result.last_modified) == (200, ETAG, LAST_MODIFIED)
    sent = [r for r in server.requests if r["path"] == "/feed" and r.get("user-agent")]
    assert sent and all(r["user-agent"] == CONFIG.user_agent for r in sent)
    assert "gzip" in sent[-1]["accept-encoding"]


def test_dns_failure(server: HostileServer, policy: AddressPolicy) -> None:
    outcome = _with_good_feed(server, policy, "http://feedwatch-test.invalid/feed")
    assert isinstance(outcome, FetchError)
    assert outcome.error_class == "dns"


def test_connection_refused(server: HostileServer) -> None:
    allowed = frozenset({("127.0.0.1", server.port), ("127.0.0.1", server.closed_port)})
    outcome = _with_good_feed(
        server, AddressPolicy(allowed=allowed), f"http://127.0.0.1:{server.closed_port}/"
    )
    assert isinstance(outcome, FetchError)
    assert outcome.error_class == "connect"


@pytest.mark.parametrize(
    "url_of",
    [
        lambda s: "file:///etc/passwd",
        lambda s: s.url("/feed"),  # the very server, but the default policy knows no exception
        lambda s: f"http://localhost:{s.port}/feed",  # by name: refused in the resolver
        lambda s: f"http://[::ffff:127.0.0.1]:{s.port}/feed",
        lambda s: f"http://2130706433:{s.port}/feed",
    ],
)
def test_default_policy_refuses_local_targets(server: HostileServer, url_of: object) -> None:
    url = url_of(server)  # type: ignore[operator]
    with pytest.raises(FetchError) as info:
        fetch_one(FetchRequest(url), CONFIG, AddressPolicy())
    assert info.value.error_class == "blocked_address"


def test_allow_private_reaches_loopback(server: HostileServer) -> None:
    result = fetch_one(FetchRequest(f"http://localhost:{server.port}/feed"), CONFIG, AddressPolicy(True))
    assert result.body == FEED


def test_whole_hostile_batch_in_one_loop(server: HostileServer, policy: AddressPolicy) -> None:
    """Everything at once: order kept, every hostile URL classified, every good feed fetched."""
    hostile = ["/gzip-bomb", "/endless", "/slowloris", "/loop-a", "/to-metadata", "/garbage"]
    requests = []
    for i, path in enumerate(hostile):
        requests.append(FetchRequest(server.url(path), key=f"bad{i}"))
        requests.append(FetchRequest(server.url(f"/feed?{i}"), key=f"good{i}"))
    outcomes = fetch_all(requests, CONFIG, policy)
    assert [o.request.key for o in outcomes if o.request] == [r.key for r in requests]
    for request, outcome in zip(requests, outcomes, strict=True):
        if str(request.key).startswith("good"):
            assert isinstance(outcome, FetchResult) and outcome.body == FEED
        else:
            assert isinstance(outcome, FetchError)


def test_per_host_limit_queues_instead_of_timing_out(server: HostileServer) -> None:
    """Many feeds on one host, per_host=2: at most two in flight, and waiting in line does not
    eat into a feed's deadline (the total wait exceeds one deadline, no fetch times out)."""
    config = replace(CONFIG, per_host=2, concurrency=10, deadline=1.0)
    policy = AddressPolicy(allowed=frozenset({("127.0.0.1", server.port)}))
    server.max_in_flight = 0
    requests = [FetchRequest(server.url(f"/slow-feed?n={i}"), key=i) for i in range(16)]
    outcomes = fetch_all(requests, config, policy)
    assert all(isinstance(o, FetchResult) for o in outcomes), outcomes
    assert server.max_in_flight == 2
