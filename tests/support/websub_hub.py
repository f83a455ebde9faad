"""A small WebSub hub on 127.0.0.1 for tests: accepts subscriptions, verifies intent, distributes.

It follows the W3C WebSub recommendation's hub side closely enough to test a subscriber:
``POST /`` with ``hub.mode``/``hub.topic``/``hub.callback``/``hub.lease_seconds``/``hub.secret``
is answered 202, then intent is verified by a GET to the callback with a random
``hub.challenge`` (the subscription is live only when it is echoed back). :meth:`Hub.publish`
POSTs content to every live subscriber of a topic, signed ``X-Hub-Signature: sha256=...``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import httpx


@dataclass
class Subscription:
    topic: str
    callback: str
    secret: str | None
    lease_seconds: int


class Hub:
    def __init__(self, lease_seconds: int | None = None) -> None:
        self.requests: list[dict[str, str]] = []
        self.verifications: list[tuple[str, int, bool]] = []  # (callback, status, echoed)
        self.live: dict[tuple[str, str], Subscription] = {}
        self.lease_override = lease_seconds
        self.changed = threading.Condition()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if form.get("hub.mode") not in ("subscribe", "unsubscribe") or not form.get("hub.callback"):
                    self.send_response(400)
                    self.end_headers()
                    return
                hub.requests.append(form)
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                threading.Thread(target=hub.verify, args=(form,), daemon=True).start()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> Hub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def verify(self, form: dict[str, str], topic: str | None = None) -> bool:
        """Verify intent for a request (``topic`` overrides, to test a subscriber's refusal)."""
        challenge = secrets.token_urlsafe(16)
        lease = self.lease_override or int(form.get("hub.lease_seconds") or 3600)
        params = {
            "hub.mode": form["hub.mode"],
            "hub.topic": topic or form["hub.topic"],
            "hub.challenge": challenge,
            "hub.lease_seconds": str(lease),
        }
        resp = httpx.get(form["hub.callback"], params=params, timeout=10)
        echoed = resp.status_code == 200 and resp.text == challenge
        with self.changed:
            self.verifications.append((form["hub.callback"], resp.status_code, echoed))
            key = (form["hub.topic"], form["hub.callback"])
            if echoed and form["hub.mode"] == "subscribe" and topic is None:
                self.live[key] = Subscription(key[0], key[1], form.get("hub.secret"), lease)
            elif echoed:
                self.live.pop(key, None)
            self.changed.notify_all()
        return echoed

    def deny(self, topic: str, callback: str, reason: str) -> int:
        params = {"hub.mode": "denied", "hub.topic": topic, "hub.reason": reason}
        return httpx.get(callback, params=params, timeout=10).status_code

    def publish(self, topic: str, body: bytes, *, secret: str | None = None) -> list[int]:
        """POST ``body`` to every live subscriber of ``topic``; ``secret`` forces a signing key."""
        statuses = []
        for sub in [s for s in self.live.values() if s.topic == topic]:
            headers = {"Content-Type": "application/rss+xml", "Link": f'<{self.url}>; rel="hub"'}
            key = secret if secret is not None else sub.secret
            if key:
                digest = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
                headers["X-Hub-Signature"] = f"sha256={digest}"
            statuses.append(httpx.post(sub.callback, content=body, headers=headers, timeout=10).status_code)
        return statuses
