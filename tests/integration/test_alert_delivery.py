"""Alert delivery against real receivers on 127.0.0.1, after the real pipeline stored the story.

Three outlets carry the seed story (syndicated, slightly edited): ``pipeline.poll_feeds`` on a
temp SQLite database makes ONE alert listing the other two as "also reported by". The alert then
goes to a signed webhook that fails twice (retried with backoff, one unique key, every signature
valid), to Apprise's ``json://`` and ``mailto://`` (aiosmtpd) targets and to a Redis Stream.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select
from support.feeds import SEED_TITLE, item, rss, seed_text
from support.services import FeedServer, Route, free_port, redis_url

from feedwatch import alerts, db, pipeline
from feedwatch.channels.apprise_channel import AppriseChannel
from feedwatch.channels.redis_stream import RedisStreamChannel
from feedwatch.channels.webhook import WebhookChannel, verify
from feedwatch.fetch import AddressPolicy
from feedwatch.models import Alert, Delivery, Feed, StoryCopy
from feedwatch.settings import Settings
from feedwatch.timeutil import utcnow

pytestmark = [pytest.mark.integration, pytest.mark.services, pytest.mark.timeout(120)]

SECRET = b"test-secret"
REDIS_DB = 9


class Receiver:
    """Records POSTs; answers 500 to the first ``fail_first``; checks signatures when signed."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.keys: Counter[str] = Counter()
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.requests.append((headers, body))
                sig = headers.get("x-feedwatch-signature")
                if sig is not None and not verify(SECRET, headers["x-feedwatch-timestamp"], body, sig):
                    receiver.bad_signatures += 1
                status = 500 if len(receiver.requests) <= receiver.fail_first else 200
                if status == 200 and "idempotency-key" in headers:
                    receiver.keys[headers["idempotency-key"]] += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    s = Settings(home=tmp_path, allow_private_networks=True)
    db.upgrade(s)
    yield s
    db.dispose_engines()


@pytest.fixture
def story_alert(settings: Settings) -> Iterator[int]:
    """The seed story from three outlets, polled by the real pipeline: the one alert's id."""
    text = seed_text()
    variants = [
        (SEED_TITLE, text),
        (SEED_TITLE, text + " (Interfax)"),
        ("Lavrov, Bayramov hold talks in Moscow", "MOSCOW, May 1. " + text),
    ]
    server = FeedServer().start()
    try:
        with db.session_scope(settings) as session:
            for i, (title, body) in enumerate(variants):
                link = f"https://outlet{i}.example.org/news/{i}"
                server.routes[f"/f{i}.xml"] = Route(rss([item(f"g{i}", title, body, link)], f"Outlet {i}"))
                url = server.url(f"/f{i}.xml")
                session.add(Feed(config_url=url, url=url, name=f"Outlet {i}"))
        with db.session_scope(settings) as session:
            ids = [f.id for f in session.exec(select(Feed)).all() if f.id is not None]
        ctx = pipeline.Context(settings=settings, policy=AddressPolicy(allow_private=True))
        for feed_id in ids:  # one at a time: the later copies must find the first alert
            pipeline.poll_feeds(ctx, [feed_id])
    finally:
        server.stop()
    with db.session_scope(settings) as session:
        alert_rows = session.exec(select(Alert)).all()
        copies = session.exec(select(StoryCopy)).all()
    assert len(alert_rows) == 1, [a.article_id for a in alert_rows]
    assert len(copies) == 2
    assert alert_rows[0].id is not None
    yield alert_rows[0].id


def test_syndicated_story_is_one_alert_and_webhook_retries_once_per_key(
    settings: Settings, story_alert: int
) -> None:
    receiver = Receiver(fail_first=2)
    try:
        policy = AddressPolicy(allowed=frozenset({("127.0.0.1", receiver.port)}))
        hook = WebhookChannel("hook", f"http://127.0.0.1:{receiver.port}/in", SECRET, policy)
        now = utcnow()
        for step in range(3):
            try:
                clock = lambda s=step: now + timedelta(hours=s)  # noqa: E731 - past each backoff
                report = alerts.deliver(story_alert, [hook], settings, clock)
            except alerts.DeliveryIncomplete:
                continue
        assert report.status == "delivered"
        # a redelivered message later sends nothing again
        alerts.deliver(story_alert, [hook], settings, lambda: now + timedelta(hours=5))
    finally:
        receiver.stop()
    assert len(receiver.requests) == 3 and receiver.bad_signatures == 0
    assert receiver.keys == Counter({f"feedwatch-alert-{story_alert}": 1})
    data = json.loads(receiver.requests[-1][1])
    assert data["title"] == SEED_TITLE
    assert sorted(c["outlet"] for c in data["also_reported"]) == ["Outlet 1", "Outlet 2"]
    assert data["reasons"][0]["highlights"], "matched terms are located in the snippet"


def test_webhook_to_a_private_address_is_refused_by_the_guard(settings: Settings, story_alert: int) -> None:
    receiver = Receiver()
    try:
        hook = WebhookChannel("hook", f"http://127.0.0.1:{receiver.port}/in", SECRET, AddressPolicy())
        with pytest.raises(alerts.DeliveryIncomplete):
            alerts.deliver(story_alert, [hook], settings, utcnow)
    finally:
        receiver.stop()
    assert receiver.requests == []
    with db.session_scope(settings) as session:
        row = session.exec(select(Delivery)).one()
        assert row.status == "retrying" and "blocked_address" in (row.last_error or "")


def test_apprise_json_and_email(settings: Settings, story_alert: int) -> None:
    from aiosmtpd.controller import Controller

    received: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope.content)
            return "250 OK"

    smtp_port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=smtp_port)
    controller.start()
    receiver = Receiver()
    try:
        json_target = AppriseChannel("json", f"json://127.0.0.1:{receiver.port}/")
        mail = AppriseChannel(
            "mail",
            f"mailto://fw@127.0.0.1:{smtp_port}?from=fw@example.org&to=desk@example.org&mode=insecure",
            fmt="html",
        )
        report = alerts.deliver(story_alert, [json_target, mail], settings, utcnow)
    finally:
        controller.stop()
        receiver.stop()
    assert report.sent == ["json", "mail"]
    body = json.loads(receiver.requests[0][1])
    assert SEED_TITLE in body["title"] and f"feedwatch-alert-{story_alert}" in body["message"]
    message = message_from_bytes(received[0])
    subject = str(make_header(decode_header(message["Subject"])))
    assert SEED_TITLE in subject and "\n" not in subject
    html = next(p for p in message.walk() if p.get_content_type() == "text/html").get_payload(decode=True)
    assert b"<b>" in html and b"Also reported by" in html


def test_redis_stream(settings: Settings, story_alert: int) -> None:
    import redis

    url = redis_url(REDIS_DB)
    stream = RedisStreamChannel("stream", url, "feedwatch:test-alerts", maxlen=100)
    alerts.deliver(story_alert, [stream], settings, utcnow)
    client = redis.Redis.from_url(url)
    try:
        entries = client.xrange("feedwatch:test-alerts")
        assert len(entries) == 1
        fields = entries[0][1]
        assert fields[b"idempotency_key"] == f"feedwatch-alert-{story_alert}".encode()
        assert json.loads(fields[b"data"])["title"] == SEED_TITLE
    finally:
        client.flushdb()
        client.close()
