"""The payloads every channel receives, the routing of a channel and the protocol it implements.

Payload text is raw feed text (data, never markup): each channel escapes it for its own format
through :mod:`feedwatch.channels.render`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Mode = Literal["immediate", "digest"]
Every = Literal["hourly", "daily"]


class ChannelError(Exception):
    """A delivery failed; the delivery is retried, then dead-lettered."""


@dataclass(frozen=True)
class TopicReason:
    topic: str
    score: float
    terms: list[str]
    snippet: str
    stage: str = "feed"
    #: [start, end) spans of matched terms inside ``snippet``, for highlighting.
    highlights: list[tuple[int, int]] = field(default_factory=list)


@dataclass(frozen=True)
class Copy:
    """Another outlet that carried the same story ("also reported by")."""

    outlet: str
    title: str
    url: str | None
    published_at: str | None


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
    also_reported: list[Copy] = field(default_factory=list)

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
        """``dataclasses.asdict`` of the payload, plus ``topic`` and ``matched_terms``. Built
        field by field: asdict deep-copies every value through a recursive walk, which was ~40 %
        of a delivery's CPU (docs/performance-history.md, round 11)."""
        data = _plain(self)
        data["reasons"] = [_plain(r) for r in self.reasons]
        data["also_reported"] = [_plain(c) for c in self.also_reported]
        data["topic"] = self.topic
        data["matched_terms"] = self.matched_terms
        return data


def _plain(obj: Any) -> dict[str, Any]:
    """The fields of a payload dataclass, each list copied (what ``asdict`` gives for these
    classes, whose values are strings, numbers, lists of those and lists of tuples, and whose
    instances hold nothing but their fields)."""
    return {name: list(v) if isinstance(v, list) else v for name, v in vars(obj).items()}


@dataclass(frozen=True)
class DigestPayload:
    """Several alerts in one message: a scheduled digest or a burst summary (rate limit)."""

    idempotency_key: str
    channel: str
    kind: Literal["digest", "burst"]
    period_start: str
    alerts: list[AlertPayload]

    def by_topic(self) -> dict[str, list[AlertPayload]]:
        """Alerts grouped under their strongest topic, topics in order of first appearance."""
        groups: dict[str, list[AlertPayload]] = {}
        for alert in self.alerts:
            groups.setdefault(alert.topic or "other", []).append(alert)
        return groups

    def to_json(self) -> dict[str, Any]:
        return {
            "idempotency_key": self.idempotency_key,
            "kind": self.kind,
            "channel": self.channel,
            "period_start": self.period_start,
            "count": len(self.alerts),
            "alerts": [a.to_json() for a in self.alerts],
        }


@dataclass(frozen=True)
class Route:
    """Which alerts a channel takes and how: topics (None = all), immediate or digest, rate."""

    topics: frozenset[str] | None = None
    mode: Mode = "immediate"
    every: Every = "hourly"
    max_per_minute: int | None = None

    def wants(self, topics: list[str]) -> bool:
        return self.topics is None or bool(self.topics.intersection(topics))


DEFAULT_ROUTE = Route()


class Channel(Protocol):
    """What a channel implements. A channel may also define ``send_many(payloads)``: the
    delivery then hands it a batch of alerts in one call, and its failure counts for each of
    them (a channel whose writes are costly per call: the JSONL file's fsync)."""

    name: str
    route: Route

    def send(self, payload: AlertPayload) -> None: ...

    def send_digest(self, digest: DigestPayload) -> None: ...
