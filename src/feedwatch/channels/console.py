"""The console channel: one structured log line per alert (stdout of ``feedwatch run``)."""

from __future__ import annotations

import structlog

from feedwatch.channels.base import DEFAULT_ROUTE, AlertPayload, DigestPayload, Route

log = structlog.get_logger("feedwatch.alert")


class ConsoleChannel:
    name = "console"

    def __init__(self, name: str = "console", route: Route = DEFAULT_ROUTE) -> None:
        self.name = name
        self.route = route

    def send(self, payload: AlertPayload) -> None:
        # structlog's renderers escape values; the title is still cut to one line.
        log.warning(
            "alert",
            alert_id=payload.alert_id,
            topics=payload.topics,
            title=payload.title[:200],
            url=payload.url,
            feed=payload.feed,
            published_at=payload.published_at,
            matched_terms=payload.matched_terms,
            also_reported=[c.outlet for c in payload.also_reported],
        )

    def send_digest(self, digest: DigestPayload) -> None:
        log.warning(
            "alert.digest",
            kind=digest.kind,
            key=digest.idempotency_key,
            alerts=len(digest.alerts),
            topics={topic: len(items) for topic, items in digest.by_topic().items()},
        )
