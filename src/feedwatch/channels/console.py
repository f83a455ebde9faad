"""The console channel: one structured log line per alert (stdout of ``feedwatch run``)."""

from __future__ import annotations

import structlog

from feedwatch.channels.base import AlertPayload

log = structlog.get_logger("feedwatch.alert")


class ConsoleChannel:
    name = "console"

    def send(self, payload: AlertPayload) -> None:
        log.warning(
            "alert",
            alert_id=payload.alert_id,
            topics=payload.topics,
            title=payload.title,
            url=payload.url,
            feed=payload.feed,
            published_at=payload.published_at,
            matched_terms=payload.matched_terms,
        )
