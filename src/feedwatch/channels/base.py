"""The payload every channel receives and the protocol a channel implements."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


class ChannelError(Exception):
    """A delivery failed; the delivery is retried, then dead-lettered."""


@dataclass(frozen=True)
class TopicReason:
    topic: str
    score: float
    terms: list[str]
    snippet: str
    stage: str = "feed"


@dataclass(frozen=True)
class AlertPayload:
    alert_id: int
    idempotency_key: str
    topics: list[str]
    title: str
    url: str | None
    feed: str
    feed_url: str
    published_at: str | None
    language: str | None
    reasons: list[TopicReason] = field(default_factory=list)

    @property
    def topic(self) -> str:
        """The strongest topic (an alert lists every topic; this one leads)."""
        return self.topics[0] if self.topics else ""

    @property
    def matched_terms(self) -> list[str]:
        seen: dict[str, None] = {}
        for reason in self.reasons:
            seen.update(dict.fromkeys(reason.terms))
        return list(seen)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["topic"] = self.topic
        data["matched_terms"] = self.matched_terms
        return data


class Channel(Protocol):
    name: str

    def send(self, payload: AlertPayload) -> None: ...
