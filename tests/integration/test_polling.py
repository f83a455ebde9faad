"""The real poll path (``pipeline.poll_feeds``) against a local HTTP server, on a temp SQLite DB.

Each test serves statuses and headers from 127.0.0.1 and checks what the feed row says after:
state, error class, next check and its reason, validators, redirect adoption. No worker: the
pipeline functions are the ones a worker calls. The clock is a test clock, moved by hand.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from support.feeds import add_feeds, item, rss
from support.services import FeedServer, Route

from feedwatch import db, feedstate, ops, pipeline, terminal
from feedwatch.models import Feed, FeedState
from feedwatch.schedule import FAILING_AFTER
from feedwatch.settings import Settings
from feedwatch.status import feed_status

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += timedelta(minutes=minutes)


@pytest.fixture
def ctx(pipeline_settings: Settings) -> pipeline.Context:
    return pipeline.Context(pipeline_settings, clock=Clock(), rng=random.Random(7))


def add_feed(ctx: pipeline.Context, url: str, **spec: Any) -> int:
    (feed_id,) = add_feeds(ctx, [url], **spec)
    return feed_id


def poll(ctx: pipeline.Context, feed_id: int, advance: float = 10) -> tuple[pipeline.PollReport, Feed]:
    assert isinstance(ctx.clock, Clock)
    ctx.clock.advance(advance)
    (report,) = pipeline.poll_feeds(ctx, [feed_id])
    with db.session_scope(ctx.settings) as session:
        feed = session.get(Feed, feed_id)
        assert feed is not None
        return report, feed


def feed_body(prefix: str, n: int = 3, **channel: str) -> bytes:
    items = [
        item(f"{prefix}-{i}", f"Story {prefix} {i}", "text", f"https://example.org/{prefix}/{i}")
        for i in range(n)
    ]
    body = rss(items)
    extra = "".join(f"<{k}>{v}</{k}>" for k, v in channel.items())
    return body.replace(
        b"<description>test</description>", b"<description>test</description>" + extra.encode()
    )


def minutes_until(feed: Feed, ctx: pipeline.Context) -> float:
    return (feed.next_check_at - ctx.clock()) / timedelta(minutes=1)


# --- validators ------------------------------------------------------------------------------------


def test_conditional_get_with_an_occasional_unconditional_fetch(
    ctx: pipeline.Context, server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server whose ETag lies (304 while the feed changed) is caught by the unconditional poll."""
    monkeypatch.setattr(feedstate, "UNCONDITIONAL_EVERY", 3)
    monkeypatch.setattr(feedstate, "unconditional_phase", lambda feed_id: 0)  # counted from zero
    server.routes["/f.xml"] = Route(feed_body("a"), etag='"v1"')
    feed_id = add_feed(ctx, server.url("/f.xml"))
    report, feed = poll(ctx, feed_id)
    assert (report.outcome, report.new, feed.etag) == ("ok", 3, '"v1"')
    report, feed = poll(ctx, feed_id)
    assert report.outcome == "not_modified" and server.conditional_hits["/f.xml"] == 1
    server.routes["/f.xml"] = Route(feed_body("b"), etag='"v1"')  # new items, same ETag: a lie
    report, feed = poll(ctx, feed_id)
    assert report.outcome == "not_modified" and feed.conditional_polls == 2
    report, feed = poll(ctx, feed_id)
    assert (report.outcome, report.new) == ("ok", 3)
    assert server.conditional_hits["/f.xml"] == 2
    assert feed.poll_history[-1].get("unconditional") is True and feed.conditional_polls == 0


def test_feeds_added_together_take_turns_at_the_unconditional_fetch(
    ctx: pipeline.Context, server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four feeds added and polled together, one unconditional poll in four each: a different
    one of them goes without validators on each poll, not all four on the same one."""
    monkeypatch.setattr(feedstate, "UNCONDITIONAL_EVERY", 4)
    paths = [f"/f{k}.xml" for k in range(4)]
    for k, path in enumerate(paths):
        server.routes[path] = Route(feed_body(f"f{k}"), etag=f'"v{k}"')
    ids = add_feeds(ctx, [server.url(path) for path in paths])
    assert sorted(feedstate.unconditional_phase(i) for i in ids) == [0, 1, 2, 3]
    assert isinstance(ctx.clock, Clock)
    unconditional_by_round = []
    for _ in range(9):
        ctx.clock.advance(10)
        hits, conditional = server.hits.copy(), server.conditional_hits.copy()
        reports = pipeline.poll_feeds(ctx, ids)
        assert all(r.outcome in ("ok", "not_modified", "unchanged") for r in reports)
        assert [server.hits[p] - hits[p] for p in paths] == [1] * 4, [r.outcome for r in reports]
        unconditional_by_round.append(
            sorted(p for p in paths if server.conditional_hits[p] == conditional[p])
        )
    assert len(unconditional_by_round[0]) == 4  # the first poll: no validators yet
    later = unconditional_by_round[1:]
    assert [len(r) for r in later] == [1] * 8
    assert sorted(r[0] for r in later[:4]) == paths and later[4:] == later[:4]


def test_body_hash_without_validators(ctx: pipeline.Context, server: FeedServer) -> None:
    server.routes["/f.xml"] = Route(feed_body("a"))
    feed_id = add_feed(ctx, server.url("/f.xml"))
    poll(ctx, feed_id)
    report, feed = poll(ctx, feed_id)
    assert report.outcome == "unchanged" and feed.etag is None and feed.body_hash
    assert server.conditional_hits["/f.xml"] == 0


# --- failure classes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "error_class", "state", "reason", "at_least"),
    [
        (Route(b"oops", status=500), "http_5xx", FeedState.BACKING_OFF, "backoff", 10),
        (
            Route(b"", status=503, headers={"Retry-After": "7200"}),
            "http_5xx",
            FeedState.BACKING_OFF,
            "Retry-After",
            120,
        ),
        (
            Route(b"", status=429, headers={"Retry-After": "3600"}),
            "http_429",
            FeedState.BACKING_OFF,
            "Retry-After",
            60,
        ),
        (Route(b"no", status=404), "http_4xx", FeedState.BACKING_OFF, "×3", 30),
        (Route(b"", status=410), "gone", FeedState.DISABLED, "410 Gone", 0),
        (Route(b"<html><body>hi</body></html>", "text/html"), None, FeedState.BACKING_OFF, "backoff", 30),
        (Route(b"\x89PNG\r\n", "image/png"), "not_a_feed", FeedState.BACKING_OFF, "not_a_feed", 30),
    ],
)
def test_failure_is_classified_and_scheduled(
    ctx: pipeline.Context,
    server: FeedServer,
    route: Route,
    error_class: str | None,
    state: str,
    reason: str,
    at_least: float,
) -> None:
    server.routes["/f.xml"] = route
    feed_id = add_feed(ctx, server.url("/f.xml"))
    report, feed = poll(ctx, feed_id)
    assert report.outcome == "error"
    assert feed.error_class == (error_class or feed.error_class)
    assert feed.state == state and reason in feed.next_check_reason, feed.next_check_reason
    assert minutes_until(feed, ctx) >= at_least
    assert feed.poll_history[-1]["error_class"] == feed.error_class


def test_failing_feed_is_probed_shown_and_recovers(ctx: pipeline.Context, server: FeedServer) -> None:
    server.routes["/f.xml"] = Route(b"down", status=502)
    feed_id = add_feed(ctx, server.url("/f.xml"))
    for _ in range(FAILING_AFTER):
        _, feed = poll(ctx, feed_id, advance=400)
    assert feed.state == FeedState.FAILING and feed.enabled
    assert "failing" in feed.next_check_reason and minutes_until(feed, ctx) <= 6 * 60 * 1.1
    with db.session_scope(ctx.settings) as session:
        status = feed_status(session, ctx.clock(), ctx.settings)
    assert status["by_state"][FeedState.FAILING] == 1
    assert status["worst"][0]["id"] == feed_id and status["worst"][0]["error_class"] == "http_5xx"
    server.routes["/f.xml"] = Route(feed_body("a"))
    report, feed = poll(ctx, feed_id, advance=400)
    assert report.outcome == "ok" and feed.state == FeedState.OK and feed.error_count == 0
    assert feed.next_check_reason.startswith(f"recovered after {FAILING_AFTER} failures")


# --- redirects -------------------------------------------------------------------------------------


def test_permanent_redirect_adopted_after_three_polls(ctx: pipeline.Context, server: FeedServer) -> None:
    server.routes["/old.xml"] = Route(b"", status=301, headers={"Location": "/new.xml"})
    server.routes["/new.xml"] = Route(feed_body("a"))
    feed_id = add_feed(ctx, server.url("/old.xml"))
    for count in (1, 2):
        _, feed = poll(ctx, feed_id)
        assert feed.url == server.url("/old.xml")
        assert (feed.redirect_candidate, feed.redirect_count) == (server.url("/new.xml"), count)
    _, feed = poll(ctx, feed_id)
    assert feed.url == server.url("/new.xml") and feed.config_url == server.url("/old.xml")
    assert feed.redirect_history[-1]["adopted"] == server.url("/new.xml")
    poll(ctx, feed_id)
    assert server.hits["/old.xml"] == 3 and server.hits["/new.xml"] == 4


def test_an_adopted_redirect_to_another_host_moves_the_feed_to_that_origin(
    ctx: pipeline.Context, server: FeedServer
) -> None:
    """The tick groups a feed with its origin's by ``Feed.origin``: it follows the URL polled."""
    moved = f"http://localhost:{server.port}/moved.xml"
    server.routes["/away.xml"] = Route(b"", status=301, headers={"Location": moved})
    server.routes["/moved.xml"] = Route(feed_body("a"))
    feed_id = add_feed(ctx, server.url("/away.xml"))
    _, feed = poll(ctx, feed_id)
    assert feed.origin == f"http://127.0.0.1:{server.port}"
    for _ in range(2):
        _, feed = poll(ctx, feed_id)
    assert feed.url == moved and feed.origin == f"http://localhost:{server.port}"


def test_temporary_redirect_never_adopted(ctx: pipeline.Context, server: FeedServer) -> None:
    server.routes["/old.xml"] = Route(b"", status=302, headers={"Location": "/new.xml"})
    server.routes["/new.xml"] = Route(feed_body("a"))
    feed_id = add_feed(ctx, server.url("/old.xml"))
    for _ in range(4):
        _, feed = poll(ctx, feed_id)
    assert feed.url == server.url("/old.xml") and feed.redirect_candidate is None
    assert [h["chain"][0][0] for h in feed.redirect_history] == [302] * 4


def test_changing_permanent_target_restarts_the_count(ctx: pipeline.Context, server: FeedServer) -> None:
    server.routes["/a.xml"] = server.routes["/b.xml"] = Route(feed_body("a"))
    server.routes["/old.xml"] = Route(b"", status=308, headers={"Location": "/a.xml"})
    feed_id = add_feed(ctx, server.url("/old.xml"))
    poll(ctx, feed_id)
    poll(ctx, feed_id)
    server.routes["/old.xml"] = Route(b"", status=301, headers={"Location": "/b.xml"})
    _, feed = poll(ctx, feed_id)
    assert (feed.redirect_candidate, feed.redirect_count) == (server.url("/b.xml"), 1)
    assert feed.url == server.url("/old.xml")


# --- hints and explanations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "word", "expect"),
    [
        (Route(feed_body("a"), headers={"Cache-Control": "public, max-age=3600"}), "max-age", 60),
        (Route(feed_body("a", ttl="90")), "ttl", 90),
        (Route(feed_body("a", ttl="100000")), "capped", 120),
    ],
)
def test_server_hints_slow_the_feed(
    ctx: pipeline.Context, server: FeedServer, route: Route, word: str, expect: float
) -> None:
    server.routes["/f.xml"] = route
    feed_id = add_feed(ctx, server.url("/f.xml"))
    _, feed = poll(ctx, feed_id)
    assert word in feed.next_check_reason
    assert expect * 0.89 <= minutes_until(feed, ctx) <= expect * 1.11


def test_feeds_show_prints_the_reason(ctx: pipeline.Context, server: FeedServer) -> None:
    server.routes["/f.xml"] = Route(feed_body("a"))
    feed_id = add_feed(ctx, server.url("/f.xml"))
    _, feed = poll(ctx, feed_id)
    result = CliRunner().invoke(ops.feeds, ["show", str(feed_id), "--json"])
    assert result.exit_code == 0, result.output
    assert feed.next_check_reason in result.output and "jitter" in feed.next_check_reason


def test_feeds_show_prints_a_run_of_quiet_polls_as_one_row(
    ctx: pipeline.Context, server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(terminal.out, "width", 250)  # one line a row: no cell wrapped
    server.routes["/f.xml"] = Route(feed_body("a"))
    feed_id = add_feed(ctx, server.url("/f.xml"), min_interval_minutes=10, max_interval_minutes=10)
    for _ in range(4):  # parsed once, then the same body three times
        _, feed = poll(ctx, feed_id)
    first, run = feed.poll_history
    assert first["outcome"] == "ok" and (run["outcome"], run["n"]) == ("unchanged", 3)
    result = CliRunner().invoke(ops.feeds, ["show", str(feed_id)])
    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.output.splitlines() if f"{run['since']} … {run['at']}" in line]
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert cells[1:4] == ["3", "unchanged", "200"]  # its polls, outcome, status
