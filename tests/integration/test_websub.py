"""WebSub end to end on loopback: a feed advertising a local hub, subscription with verification of
intent, signed content pushed through the pipeline into articles and alert rows, renewal, refusals."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select
from support.feeds import SEED_TITLE, item, rss, seed_text
from support.services import FeedServer, Route, free_port
from support.websub_hub import Hub

from feedwatch import db, pipeline, store, websub
from feedwatch.models import Alert, Article, Feed
from feedwatch.settings import Settings, reset_settings
from feedwatch.sources import FeedSpec
from feedwatch.timeutil import utcnow

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@dataclass
class Setup:
    ctx: pipeline.Context
    hub: Hub
    feeds: FeedServer
    feed_id: int
    topic: str


def advertising_feed(hub_url: str, topic: str) -> bytes:
    links = (
        f'<atom:link xmlns:atom="http://www.w3.org/2005/Atom" rel="hub" href="{hub_url}"/>'
        f'<atom:link xmlns:atom="http://www.w3.org/2005/Atom" rel="self" href="{topic}"/>'
    )
    body = rss([item("old-1", "Weather report", "Sunny.", "https://example.org/w")])
    return body.replace(
        b"<description>test</description>", b"<description>test</description>" + links.encode()
    )


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    port = free_port()
    monkeypatch.setenv("FEEDWATCH_HOME", str(tmp_path))
    monkeypatch.delenv("FEEDWATCH_DATABASE_URL", raising=False)
    monkeypatch.setenv("FEEDWATCH_ALLOW_PRIVATE_NETWORKS", "true")
    monkeypatch.setenv("FEEDWATCH_PER_HOST_MIN_GAP_SECONDS", "0")
    monkeypatch.setenv("FEEDWATCH_WEBSUB_CALLBACK_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("FEEDWATCH_WEBSUB_LEASE_SECONDS", "3600")
    reset_settings()
    settings = Settings()
    db.upgrade(settings)
    ctx = pipeline.Context(settings)
    callback = websub.make_server(ctx, ("127.0.0.1", port))
    threading.Thread(target=callback.serve_forever, daemon=True).start()
    hub, feeds = Hub().start(), FeedServer().start()
    topic = feeds.url("/f.xml")
    feeds.routes["/f.xml"] = Route(advertising_feed(hub.url, topic))
    with db.session_scope(settings) as session:
        store.sync_feeds(session, [FeedSpec(url=topic, interval_minutes=10)], utcnow())
        feed_id = session.exec(select(Feed.id)).one()
    assert feed_id is not None
    try:
        yield Setup(ctx, hub, feeds, feed_id, topic)
    finally:
        callback.shutdown()
        callback.server_close()
        hub.stop()
        feeds.stop()
        db.dispose_engines()
        reset_settings()


def feed_row(s: Setup) -> Feed:
    with db.session_scope(s.ctx.settings) as session:
        feed = session.get(Feed, s.feed_id)
        assert feed is not None
        return feed


def subscribe(s: Setup) -> Feed:
    pipeline.poll_feeds(s.ctx, [s.feed_id])  # discovers the hub
    assert websub.maintain(s.ctx.settings) == [s.feed_id]
    with s.hub.changed:
        assert s.hub.changed.wait_for(lambda: len(s.hub.live) == 1, timeout=10), s.hub.verifications
    return feed_row(s)


def count(s: Setup, model: type[Article] | type[Alert]) -> int:
    with db.session_scope(s.ctx.settings) as session:
        return len(session.exec(select(model)).all())


def test_subscribe_verify_push_and_fall_back_to_rare_polls(setup: Setup) -> None:
    s = setup
    feed = subscribe(s)
    (request,) = s.hub.requests
    assert request["hub.topic"] == s.topic and request["hub.callback"].endswith(f"/websub/{s.feed_id}")
    assert request["hub.secret"] == feed.websub_secret and len(feed.websub_secret or "") >= 32
    assert feed.websub_state == "subscribed" and feed.websub_lease_until is not None
    assert feed.websub_lease_until - utcnow() > timedelta(minutes=55)

    (report,) = pipeline.poll_feeds(s.ctx, [s.feed_id])
    assert "WebSub subscribed" in (report.next_check or "")

    before = count(s, Article)
    pushed = rss([item("push-1", SEED_TITLE, seed_text(), "https://example.org/news/pushed")])
    assert s.hub.publish(s.topic, pushed) == [202]
    assert count(s, Article) == before + 1 and count(s, Alert) == 1
    feed = feed_row(s)
    assert feed.poll_history[-1]["outcome"] == "pushed" and feed.poll_history[-1]["new"] == 1
    assert feed.websub_last_push_at is not None


@pytest.mark.parametrize("secret", ["wrong secret", ""])
def test_forged_or_unsigned_push_is_acknowledged_and_dropped(setup: Setup, secret: str) -> None:
    s = setup
    subscribe(s)
    before = count(s, Article)
    forged = rss([item("forged", SEED_TITLE, seed_text(), "https://example.org/forged")])
    assert s.hub.publish(s.topic, forged, secret=secret) == [202]
    assert count(s, Article) == before and count(s, Alert) == 0


def test_lease_renewed_before_it_expires(setup: Setup) -> None:
    s = setup
    subscribe(s)
    assert websub.maintain(s.ctx.settings) == []  # fresh lease: nothing to do
    with db.session_scope(s.ctx.settings) as session:
        feed = session.get(Feed, s.feed_id)
        assert feed is not None
        # granted 57 minutes ago for an hour: under 10 % of the lease left
        feed.websub_requested_at = utcnow() - timedelta(minutes=57)
        feed.websub_lease_until = utcnow() + timedelta(minutes=3)
        session.add(feed)
    assert websub.maintain(s.ctx.settings) == [s.feed_id]
    with s.hub.changed:
        assert s.hub.changed.wait_for(lambda: len(s.hub.verifications) == 2, timeout=10)
    assert len(s.hub.requests) == 2
    assert feed_row(s).websub_lease_until - utcnow() > timedelta(minutes=55)  # type: ignore[operator]


def test_verification_for_another_topic_is_refused(setup: Setup) -> None:
    s = setup
    subscribe(s)
    assert s.hub.verify(s.hub.requests[0], topic="http://127.0.0.1:1/other.xml") is False
    assert s.hub.verifications[-1][1] == 404


def test_denied_subscription_is_recorded(setup: Setup) -> None:
    s = setup
    feed = subscribe(s)
    assert s.hub.deny(s.topic, websub.callback_url(s.ctx.settings, s.feed_id), "policy") == 200
    assert feed_row(s).websub_state == "denied" and feed.websub_state == "subscribed"


def test_off_without_a_callback_url(setup: Setup) -> None:
    pipeline.poll_feeds(setup.ctx, [setup.feed_id])
    off = setup.ctx.settings.model_copy(update={"websub_callback_url": ""})
    assert websub.maintain(off) == [] and setup.hub.requests == []


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("sha256={sha256}", True),
        ("sha1={sha1}", True),
        ("SHA256={sha256}", True),
        ("sha256=00", False),
        ("md5={sha256}", False),
        ("", False),
    ],
)
def test_signature_check(header: str, ok: bool) -> None:
    body, secret = b"<rss/>", "s3cret"
    digests = {
        n: hmac.new(secret.encode(), body, getattr(hashlib, n)).hexdigest() for n in ("sha1", "sha256")
    }
    assert websub.signature_ok(secret, body, header.format(**digests) or None) is ok
    assert websub.signature_ok(None, body, header.format(**digests)) is False
