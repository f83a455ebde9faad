"""WebSub (W3C, formerly PubSubHubbub): the hub pushes new items, polling becomes the fallback.

Off unless ``FEEDWATCH_WEBSUB_CALLBACK_URL`` is set to the public base URL where
``feedwatch websub serve`` is reachable. Then:

1. A poll that parses a feed advertising ``<link rel="hub">`` records the hub and the topic (its
   ``rel="self"`` URL, else the URL fetched) on the feed (``feedstate``).
2. :func:`maintain` (run every minute by ``websub serve``, or once by ``websub renew``) asks the
   hub to subscribe ``{callback}/websub/{feed_id}`` to the topic, with a per-subscription
   secret and ``FEEDWATCH_WEBSUB_LEASE_SECONDS``; it renews when a lease has less than
   ``RENEW_BEFORE`` of its length left, and retries requests the hub never verified.
3. The hub verifies intent with a GET carrying ``hub.mode``, ``hub.topic``, ``hub.challenge``
   and ``hub.lease_seconds``: answered with the challenge only when the topic is the one we
   asked for; the lease's end is stored. ``denied`` is recorded with the hub's reason.
4. The hub POSTs new content signed ``X-Hub-Signature: sha256=HMAC(secret, body)`` (sha1,
   sha384, sha512 accepted). A valid one goes through :func:`feedwatch.pipeline.ingest_pushed`
   (parse → normalize → store → rules → alert rows, then publish); an invalid or unsigned one
   is acknowledged with 202 and dropped, as the spec requires (a 4xx would teach a forger).
5. While a lease is live the feed is polled at most every ``feedstate.WEBSUB_FALLBACK``.

The hub URL comes from feed content, so the subscription request passes the same address
guard as a feed fetch (``check_url``), never follows redirects and ignores proxy settings.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import click
import httpx
import structlog
from sqlmodel import col, select

from feedwatch.db import session_scope
from feedwatch.fetch import AddressPolicy, ErrorClass, FetchError, check_url
from feedwatch.models import Feed
from feedwatch.settings import Settings, get_settings
from feedwatch.timeutil import to_utc, utcnow

if TYPE_CHECKING:
    from feedwatch.pipeline import Context

log = structlog.get_logger("feedwatch.websub")

RENEW_BEFORE = 0.1  # of the lease's length
RETRY_AFTER = timedelta(hours=1)  # a request the hub never verified, or a denial
MAINTAIN_EVERY = 60.0  # seconds, in `websub serve`
HUB_TIMEOUT = 10.0
_DIGESTS: dict[str, Callable[[], Any]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}


def callback_url(settings: Settings, feed_id: int) -> str:
    return f"{settings.websub_callback_url.rstrip('/')}/websub/{feed_id}"


def signature_ok(secret: str | None, body: bytes, header: str | None) -> bool:
    """Is ``X-Hub-Signature`` (``method=hexdigest``) the HMAC of ``body`` under ``secret``?"""
    if not secret or not header or "=" not in header:
        return False
    method, _, digest = header.strip().partition("=")
    factory = _DIGESTS.get(method.lower())
    if factory is None:
        return False
    expected = hmac.new(secret.encode(), body, factory).hexdigest()
    return hmac.compare_digest(expected, digest.strip().lower())


# --- subscribing -----------------------------------------------------------------------------------


def _due(feed: Feed, now: datetime) -> bool:
    requested = to_utc(feed.websub_requested_at) if feed.websub_requested_at else None
    if feed.websub_state in (None, "unsubscribed"):
        return True
    if feed.websub_state in ("requested", "denied"):
        return requested is None or now - requested >= RETRY_AFTER
    lease = to_utc(feed.websub_lease_until) if feed.websub_lease_until else None
    if lease is None or requested is None:
        return True
    return lease - now <= (lease - requested) * RENEW_BEFORE


def request_subscription(settings: Settings, feed: Feed, now: datetime, policy: AddressPolicy) -> None:
    """POST the subscription request to the feed's hub; the hub verifies it later (GET)."""
    assert feed.id is not None and feed.websub_hub and feed.websub_topic
    check_url(feed.websub_hub, policy)  # the hub URL came from feed content
    feed.websub_secret = feed.websub_secret or secrets.token_hex(32)
    form = {
        "hub.mode": "subscribe",
        "hub.topic": feed.websub_topic,
        "hub.callback": callback_url(settings, feed.id),
        "hub.lease_seconds": str(settings.websub_lease_seconds),
        "hub.secret": feed.websub_secret,
    }
    with httpx.Client(timeout=HUB_TIMEOUT, follow_redirects=False, trust_env=False) as client:
        resp = client.post(feed.websub_hub, data=form, headers={"User-Agent": settings.user_agent})
    if resp.status_code not in (202, 204):  # 202 Accepted is what the spec says; be lenient
        error_class: ErrorClass = "http_4xx" if resp.status_code < 500 else "http_5xx"
        raise FetchError(error_class, f"hub answered {resp.status_code}", status=resp.status_code)
    if feed.websub_state != "subscribed":  # a renewal keeps the live lease until verified
        feed.websub_state = "requested"
    feed.websub_requested_at = now


def maintain(
    settings: Settings, now: datetime | None = None, policy: AddressPolicy | None = None
) -> list[int]:
    """Subscribe feeds with a hub and renew leases about to expire; returns the feed ids asked."""
    if not settings.websub_callback_url:
        return []
    now = now or utcnow()
    policy = policy or AddressPolicy.from_settings(settings)
    asked: list[int] = []
    with session_scope(settings) as session:
        stmt = select(Feed).where(col(Feed.enabled), col(Feed.websub_hub).is_not(None))
        for feed in session.exec(stmt).all():
            if not _due(feed, now):
                continue
            try:
                request_subscription(settings, feed, now, policy)
            except (FetchError, httpx.HTTPError) as exc:
                if feed.websub_state != "subscribed":
                    feed.websub_state = "requested"
                feed.websub_requested_at = now  # retried after RETRY_AFTER
                log.warning("websub.subscribe_failed", feed_id=feed.id, hub=feed.websub_hub, error=str(exc))
            else:
                assert feed.id is not None
                asked.append(feed.id)
                log.info("websub.subscribe_requested", feed_id=feed.id, hub=feed.websub_hub)
            session.add(feed)
    return asked


# --- the callback endpoint -------------------------------------------------------------------------


def _feed_id(path: str) -> int | None:
    parts = urlsplit(path).path.strip("/").split("/")
    if len(parts) == 2 and parts[0] == "websub" and parts[1].isdigit():
        return int(parts[1])
    return None


def verify_intent(settings: Settings, feed_id: int, query: dict[str, str], now: datetime) -> str | None:
    """The hub's GET: the challenge to echo when we asked for this, else ``None`` (answer 404)."""
    mode, topic = query.get("hub.mode"), query.get("hub.topic")
    with session_scope(settings) as session:
        feed = session.get(Feed, feed_id)
        if feed is None or not topic or topic != feed.websub_topic:
            return None
        if mode == "denied":
            feed.websub_state = "denied"
            log.warning("websub.denied", feed_id=feed_id, reason=query.get("hub.reason"))
            session.add(feed)
            return ""
        challenge = query.get("hub.challenge")
        if not challenge:
            return None
        if mode == "subscribe" and feed.websub_state in ("requested", "subscribed"):
            lease = query.get("hub.lease_seconds", "")
            seconds = int(lease) if lease.isdigit() else settings.websub_lease_seconds
            feed.websub_state, feed.websub_lease_until = "subscribed", now + timedelta(seconds=seconds)
        elif mode == "unsubscribe" and feed.websub_state == "unsubscribed":
            feed.websub_lease_until = None
        else:
            return None
        session.add(feed)
        log.info("websub.verified", feed_id=feed_id, mode=mode, lease_until=str(feed.websub_lease_until))
        return challenge


def receive(ctx: Context, feed_id: int, body: bytes, headers: dict[str, str]) -> bool:
    """The hub's POST: ingest a correctly signed body; ``False`` when it was dropped."""
    from feedwatch.pipeline import ingest_pushed

    with session_scope(ctx.settings) as session:
        feed = session.get(Feed, feed_id)
        secret = feed.websub_secret if feed is not None and feed.enabled else None
    if not signature_ok(secret, body, headers.get("x-hub-signature")):
        log.warning("websub.bad_signature", feed_id=feed_id, signed=bool(headers.get("x-hub-signature")))
        return False
    report = ingest_pushed(ctx, feed_id, body, headers)
    return report.outcome != "error"


def make_server(ctx: Context, address: tuple[str, int]) -> ThreadingHTTPServer:
    """The callback endpoint on ``address``; ``serve_forever`` it in a thread or the main one."""
    settings = ctx.settings

    class Handler(BaseHTTPRequestHandler):
        server_version = "feedwatch-websub"

        def _answer(self, status: int, body: bytes = b"") -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            feed_id = _feed_id(self.path)
            query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
            challenge = None if feed_id is None else verify_intent(settings, feed_id, query, ctx.clock())
            if challenge is None:
                self._answer(404, b"unknown subscription")
            else:
                self._answer(200, challenge.encode())

        def do_POST(self) -> None:
            feed_id = _feed_id(self.path)
            length = self.headers.get("Content-Length", "")
            if feed_id is None or not length.isdigit():
                self._answer(404 if feed_id is None else 411)
                return
            if int(length) > settings.max_body_bytes:
                self._answer(413)
                return
            body = self.rfile.read(int(length))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                receive(ctx, feed_id, body, headers)
            except Exception:  # a bug must not kill the endpoint; the fallback poll catches up
                log.exception("websub.receive_failed", feed_id=feed_id)
                self._answer(500)
                return
            self._answer(202)

        def log_message(self, *args: object) -> None:
            pass  # one structured line per event above instead

    httpd = ThreadingHTTPServer(address, Handler)
    httpd.daemon_threads = True
    return httpd


def _maintain_forever(settings: Settings, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            maintain(settings)
        except Exception:  # the database may be down for a while: try again next round
            log.exception("websub.maintain_failed")
        stop.wait(MAINTAIN_EVERY)


# --- command line ----------------------------------------------------------------------------------


@click.group("websub")
def websub() -> None:
    """WebSub push: the callback endpoint and subscriptions (off unless a callback URL is set)."""


@websub.command("serve")
@click.option("--listen", default=None, help="host:port (default FEEDWATCH_WEBSUB_LISTEN).")
def serve(listen: str | None) -> None:
    """Serve the callback endpoint and keep subscriptions renewed."""
    from feedwatch.pipeline import Context
    from workers.tasks import deliver_alert, publish  # publishing alerts is messaging the workers

    settings = get_settings()
    if not settings.websub_callback_url:
        raise click.ClickException("FEEDWATCH_WEBSUB_CALLBACK_URL is empty: WebSub is off")
    host, _, port = (listen or settings.websub_listen).rpartition(":")
    ctx = Context(settings, publish_alert=lambda ids: publish(deliver_alert, ids))
    httpd = make_server(ctx, (host or "127.0.0.1", int(port)))
    stop = threading.Event()
    threading.Thread(target=_maintain_forever, args=(settings, stop), daemon=True).start()
    click.echo(f"websub callback on {host}:{port} for {settings.websub_callback_url}")
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        httpd.server_close()


@websub.command("renew")
def renew() -> None:
    """Subscribe feeds that advertise a hub and renew leases about to expire, once."""
    asked = maintain(get_settings())
    click.echo(f"subscription requests sent for {len(asked)} feeds: {asked}")
