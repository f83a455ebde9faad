"""What a rulebook compiles to, and what matching returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from feedwatch.immutable import immutable


class RulesError(ValueError):
    """An invalid rules file; the message reads ``<file>:<line>: <reason>``."""


class RulesWarning(UserWarning):
    """A rule that is valid but can never match (or never matters); same message format."""


@immutable
class Hit:
    """One term occurrence. ``start``/``end`` index the original field text; ``weight`` is the
    term weight times the field weight (title counts more than body)."""

    term: str
    field: str
    start: int
    end: int
    weight: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "term": self.term,
            "field": self.field,
            "start": self.start,
            "end": self.end,
            "weight": self.weight,
        }


@immutable
class TopicMatch:
    topic: str
    score: float
    terms: list[str]
    hits: list[Hit]
    snippet: str
    threshold: float = 0.0
    clauses: list[str] = field(default_factory=list)
    groups: dict[str, float] = field(default_factory=dict)

    def explanation(self) -> dict[str, Any]:
        """JSON-serializable account of why the topic fired."""
        return {
            "topic": self.topic,
            "score": round(self.score, 3),
            "threshold": self.threshold,
            "terms": list(self.terms),
            "hits": [h.as_dict() for h in self.hits],
            "snippet": self.snippet,
            "clauses": list(self.clauses),
            "groups": {k: round(v, 3) for k, v in self.groups.items()},
        }


@dataclass(frozen=True)
class Clause:
    """Group indexes into the topic's ``groups``; see the package docstring for semantics."""

    name: str
    all: tuple[int, ...]
    any: tuple[int, ...]
    none: tuple[int, ...]
    within: int | None
    boost: float


@dataclass(frozen=True)
class Topic:
    name: str
    threshold: float
    groups: tuple[str, ...]
    clauses: tuple[Clause, ...]


@dataclass(frozen=True)
class TermUse:
    """Where one distinct word sequence counts: a topic's group, with a weight."""

    topic: int
    group: int
    weight: float
    source: str
