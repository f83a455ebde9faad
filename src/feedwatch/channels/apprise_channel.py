"""Apprise: one channel type for Slack, Telegram, Matrix, Teams, Discord, ntfy, e-mail and more.

The URL (``slack://…``, ``tgram://…``, ``mailto://…``, ``json://…``) holds the service's tokens,
so it is read only from the environment (``url_env``) and never logged; Apprise's own log lines
are kept at WARNING and its URLs are printed in privacy mode.

Body format: ``text`` by default, which every service renders safely (Apprise escapes it for
Slack, HTML e-mail and Telegram itself). ``markdown`` or ``html`` send our own markup for
services that show it; feed text is escaped for that format by ``render`` either way.
"""

from __future__ import annotations

import logging

import apprise

from feedwatch.channels import render
from feedwatch.channels.base import DEFAULT_ROUTE, AlertPayload, ChannelError, DigestPayload, Route

_FORMATS = {
    "text": apprise.NotifyFormat.TEXT,
    "markdown": apprise.NotifyFormat.MARKDOWN,
    "html": apprise.NotifyFormat.HTML,
    "slack": apprise.NotifyFormat.MARKDOWN,
}

logging.getLogger("apprise").setLevel(logging.WARNING)


class AppriseChannel:
    def __init__(
        self, name: str, url: str, fmt: render.Format = "text", route: Route = DEFAULT_ROUTE
    ) -> None:
        self.name = name
        self.route = route
        self._fmt: render.Format = fmt
        self._apprise = apprise.Apprise()
        if not self._apprise.add(url):
            # The URL itself is a secret: name the scheme only.
            raise ChannelError(f"channel {name!r}: Apprise does not accept the {url.split(':', 1)[0]}:// URL")

    def send(self, payload: AlertPayload) -> None:
        self._notify(render.title(payload), render.alert_body(payload, self._fmt))

    def send_digest(self, digest: DigestPayload) -> None:
        self._notify(render.digest_title(digest), render.digest_body(digest, self._fmt))

    def _notify(self, title: str, body: str) -> None:
        ok = self._apprise.notify(body=body, title=title, body_format=_FORMATS[self._fmt])
        if not ok:
            raise ChannelError(f"apprise channel {self.name!r}: the service refused or was unreachable")
