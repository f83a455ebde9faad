"""Scoring a rulebook against a labeled JSONL file (``title``, ``summary``, ``topics``, ``lang``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from feedwatch.rules.engine import Rulebook


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, predicted: bool, actual: bool) -> None:
        self.tp += predicted and actual
        self.fp += predicted and not actual
        self.fn += actual and not predicted

    def as_dict(self) -> dict[str, float | int]:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        return {
            "precision": round(p, 4),
            "recall": round(r, 4),
            "f1": round(f, 4),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
        }


@dataclass(frozen=True)
class Error:
    kind: str  # "miss" or "false_alarm"
    topic: str
    line: int
    lang: str
    title: str
    summary: str
    score: float


@dataclass
class Report:
    topics: dict[str, Counts] = field(default_factory=dict)
    by_lang: dict[str, dict[str, Counts]] = field(default_factory=dict)
    errors: list[Error] = field(default_factory=list)
    items: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "topics": {t: c.as_dict() for t, c in self.topics.items()},
            "by_lang": {
                lang: {t: c.as_dict() for t, c in per.items()} for lang, per in sorted(self.by_lang.items())
            },
        }


class LabelError(ValueError):
    """A labeled file that cannot be read; names file and line."""


def read_labeled(path: Path) -> list[tuple[int, dict[str, Any]]]:
    out: list[tuple[int, dict[str, Any]]] = []
    with Path(path).open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LabelError(f"{path}:{n}: not JSON: {exc.msg}") from exc
            if not isinstance(item, dict) or not isinstance(item.get("topics", []), list):
                raise LabelError(f"{path}:{n}: expected an object with a 'topics' list")
            out.append((n, item))
    return out


def evaluate(rulebook: Rulebook, items: list[tuple[int, dict[str, Any]]]) -> Report:
    report = Report(topics={t: Counts() for t in rulebook.topics})
    for n, item in items:
        title, summary = str(item.get("title") or ""), str(item.get("summary") or "")
        lang = str(item.get("lang") or "?")
        scores = {m.topic: m.score for m in rulebook.match(title, summary, item.get("lang"))}
        actual = set(item.get("topics", []))
        per_lang = report.by_lang.setdefault(lang, {t: Counts() for t in rulebook.topics})
        for topic in rulebook.topics:
            predicted, truth = topic in scores, topic in actual
            report.topics[topic].add(predicted, truth)
            per_lang[topic].add(predicted, truth)
            if predicted != truth:
                kind = "false_alarm" if predicted else "miss"
                report.errors.append(Error(kind, topic, n, lang, title, summary, scores.get(topic, 0.0)))
        report.items += 1
    return report
