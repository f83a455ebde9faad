"""Loading and validating a rules file, then compiling it into one automaton.

Every mistake is reported as ``RulesError("<file>:<line>: <reason>")``. tomllib keeps no
positions, so the line is found by searching the raw text for the offending key or term.
Rules that are valid but can never fire are reported as ``RulesWarning`` instead.
"""

from __future__ import annotations

import tomllib
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ahocorasick

from feedwatch.rules.engine import Rulebook
from feedwatch.rules.model import Clause, RulesError, RulesWarning, TermUse, Topic
from feedwatch.rules.morph import MORPHOLOGIES, stem
from feedwatch.rules.terms import TermSyntaxError, WordPattern, parse_term

_TOP_KEYS = {"settings", "lists", "topics"}
_SETTINGS = {"morphology", "title_weight", "body_weight", "min_prefix"}
_TOPIC_KEYS = {"description", "threshold", "groups", "clauses"}
_GROUP_KEYS = {"description", "weight", "terms"}
_CLAUSE_KEYS = {"name", "description", "all", "any", "none", "within", "boost"}


class _Locator:
    """Turns a chain of keys into ``file:line`` by scanning the raw text in order."""

    def __init__(self, source: str, raw: str) -> None:
        self.source = source
        self.lines = raw.splitlines()

    def line(self, *needles: str) -> int:
        found, start = 0, 0
        for needle in needles:
            for n in range(start, len(self.lines)):
                if needle in self.lines[n]:
                    found, start = n + 1, n
                    break
        return found

    def where(self, *needles: str) -> str:
        line = self.line(*needles)
        return f"{self.source}:{line}" if line else self.source

    def error(self, reason: str, *needles: str) -> RulesError:
        return RulesError(f"{self.where(*needles)}: {reason}")

    def warn(self, reason: str, *needles: str) -> None:
        warnings.warn(RulesWarning(f"{self.where(*needles)}: {reason}"), stacklevel=4)


def load_rulebook(path: Path, *, morphology: str | None = None) -> Rulebook:
    """Read and compile a TOML rules file; ``morphology`` overrides the file's setting."""
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{path}:0: cannot read rules file: {exc.strerror}") from exc
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None) or _decode_line(str(exc), raw)
        raise RulesError(f"{path}:{line}: invalid TOML: {exc}") from exc
    return compile_rulebook(data, str(path), raw=raw, morphology=morphology)


def _decode_line(message: str, raw: str) -> int:
    """tomllib (3.11) only says "(at line N, column M)" or "(at end of document)"."""
    if "end of document" in message:
        return max(1, len(raw.splitlines()))
    marker = "line "
    if marker in message:
        digits = message.split(marker, 1)[1].split(",", 1)[0].split(")", 1)[0]
        if digits.isdigit():
            return int(digits)
    return 0


def compile_rulebook(
    data: Mapping[str, Any],
    source: str = "<rules>",
    *,
    raw: str = "",
    morphology: str | None = None,
) -> Rulebook:
    """Validate ``data`` (a parsed rules file) and compile it; raises ``RulesError``."""
    loc = _Locator(source, raw)
    _only(loc, data, _TOP_KEYS, "top level", ())
    settings = _settings(loc, data.get("settings", {}), morphology)
    lists = data.get("lists", {})
    if not isinstance(lists, dict):
        raise loc.error("[lists] must be a table of term lists", "[lists]")
    topics_raw = data.get("topics")
    if not isinstance(topics_raw, dict) or not topics_raw:
        raise loc.error("no [topics.<name>] tables: a rulebook needs at least one topic")

    builder = _Builder(loc, settings, lists)
    topics = [builder.topic(i, name, spec) for i, (name, spec) in enumerate(topics_raw.items())]
    return builder.build(topics)


def _only(
    loc: _Locator, table: Mapping[str, Any], allowed: set[str], what: str, path: tuple[str, ...]
) -> None:
    for key in table:
        if key not in allowed:
            raise loc.error(
                f"{what}: unknown key {key!r} (expected one of {', '.join(sorted(allowed))})",
                *path,
                key,
            )


def _settings(loc: _Locator, raw: Any, override: str | None) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise loc.error("[settings] must be a table", "settings")
    _only(loc, raw, _SETTINGS, "settings", ("[settings]",))
    out: dict[str, Any] = {"morphology": "wildcard", "title_weight": 2.0, "body_weight": 1.0, "min_prefix": 3}
    out.update(raw)
    if override is not None:
        out["morphology"] = override
    if out["morphology"] not in MORPHOLOGIES:
        raise loc.error(f"settings: morphology must be one of {MORPHOLOGIES}", "morphology")
    for key in ("title_weight", "body_weight"):
        if not _number(out[key]) or out[key] <= 0:
            raise loc.error(f"settings: {key} must be a positive number", key)
    if not isinstance(out["min_prefix"], int) or out["min_prefix"] < 1:
        raise loc.error("settings: min_prefix must be a positive integer", "min_prefix")
    return out


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


class _Builder:
    """Collects word patterns and term uses across topics, so equal words share one key."""

    def __init__(self, loc: _Locator, settings: dict[str, Any], lists: dict[str, Any]) -> None:
        self.loc = loc
        self.settings = settings
        self.lists = lists
        self.stemmed = settings["morphology"] == "stem"
        self.word_ids: dict[str, int] = {}
        self.term_ids: dict[tuple[int, ...], int] = {}
        self.uses: list[list[TermUse]] = []

    # -- terms --------------------------------------------------------------------------------
    def _key(self, w: WordPattern) -> str:
        if self.stemmed:
            return f" {stem(w.text)} "
        return f" {w.text}" if w.prefix else f" {w.text} "

    def _add(self, words: tuple[WordPattern, ...], use: TermUse) -> None:
        wids = tuple(self.word_ids.setdefault(self._key(w), len(self.word_ids)) for w in words)
        tid = self.term_ids.setdefault(wids, len(self.term_ids))
        if tid == len(self.uses):
            self.uses.append([])
        # The same words listed twice in one group (often via two lists) count once, at the
        # higher weight, so repetition in the rules file never inflates a score.
        same = [k for k, u in enumerate(self.uses[tid]) if (u.topic, u.group) == (use.topic, use.group)]
        if not same:
            self.uses[tid].append(use)
        elif self.uses[tid][same[0]].weight < use.weight:
            self.uses[tid][same[0]] = use

    def _entries(
        self, items: Any, weight: float, path: tuple[str, ...], seen: frozenset[str] = frozenset()
    ) -> list[tuple[str, float]]:
        if not isinstance(items, list):
            raise self.loc.error("terms must be a list", *path)
        out: list[tuple[str, float]] = []
        for item in items:
            term, w = item, weight
            if isinstance(item, dict):
                _only(self.loc, item, {"term", "weight"}, "term table", path)
                term, w = item.get("term"), item.get("weight", weight)
                if not _number(w) or w <= 0:
                    raise self.loc.error(f"term {term!r}: weight must be a positive number", *path, str(term))
            if not isinstance(term, str):
                raise self.loc.error(f"term {term!r} is not a string", *path)
            if term.startswith("@"):
                name = term[1:]
                if name not in self.lists:
                    raise self.loc.error(f"unknown list {term!r} (define it under [lists])", *path, term)
                if name in seen:
                    raise self.loc.error(f"list {term!r} includes itself", *path, term)
                out.extend(self._entries(self.lists[name], float(w), ("[lists]", name), seen | {name}))
            else:
                out.append((term, float(w)))
        return out

    # -- topics -------------------------------------------------------------------------------
    def topic(self, t_i: int, name: str, spec: Any) -> Topic:
        head = f"[topics.{name}"
        if not isinstance(spec, dict):
            raise self.loc.error(f"topic {name!r} must be a table", head)
        _only(self.loc, spec, _TOPIC_KEYS, f"topic {name!r}", (head,))
        threshold = spec.get("threshold", 1.0)
        if not _number(threshold) or threshold <= 0:
            raise self.loc.error(f"topic {name!r}: threshold must be a positive number", head, "threshold")
        groups_raw = spec.get("groups")
        if not isinstance(groups_raw, dict) or not groups_raw:
            raise self.loc.error(f"topic {name!r} has no groups", head)
        names = list(groups_raw)
        max_value = [self.group(t_i, name, g_i, g, groups_raw[g]) for g_i, g in enumerate(names)]
        clauses_raw = spec.get("clauses")
        if not isinstance(clauses_raw, list) or not clauses_raw:
            raise self.loc.error(f"topic {name!r} has no [[topics.{name}.clauses]]", head)
        clauses = [self.clause(name, i, c, names) for i, c in enumerate(clauses_raw)]
        self._warn_dead(name, float(threshold), clauses, names, max_value)
        return Topic(name, float(threshold), tuple(names), tuple(clauses))

    def group(self, t_i: int, topic: str, g_i: int, name: str, spec: Any) -> float:
        head = (f"[topics.{topic}.groups.{name}]",)
        if not isinstance(spec, dict):
            raise self.loc.error(f"topic {topic!r}: group {name!r} must be a table", *head)
        _only(self.loc, spec, _GROUP_KEYS, f"topic {topic!r}: group {name!r}", head)
        weight = spec.get("weight", 1.0)
        if not _number(weight) or weight <= 0:
            raise self.loc.error(f"topic {topic!r}: group {name!r}: weight must be positive", *head, "weight")
        entries = self._entries(spec.get("terms", []), float(weight), head)
        if not entries:
            raise self.loc.error(f"topic {topic!r}: group {name!r} has no terms", *head)
        for term, w in entries:
            try:
                forms = parse_term(term, self.settings["min_prefix"])
            except TermSyntaxError as exc:
                raise self.loc.error(f"topic {topic!r}: group {name!r}: {exc}", *head, f'"{term}"') from None
            for words in forms:
                self._add(words, TermUse(t_i, g_i, w, term))
        return max(w for _, w in entries)

    def clause(self, topic: str, i: int, spec: Any, names: list[str]) -> Clause:
        head = (f"[[topics.{topic}.clauses]]",)
        if not isinstance(spec, dict):
            raise self.loc.error(f"topic {topic!r}: clause {i + 1} must be a table", *head)
        label = str(spec.get("name", f"clause{i + 1}"))
        needles = (*head, f'"{label}"') if "name" in spec else head
        what = f"topic {topic!r}: clause {label!r}"
        _only(self.loc, spec, _CLAUSE_KEYS, what, needles)
        refs: dict[str, tuple[int, ...]] = {}
        for key in ("all", "any", "none"):
            value = spec.get(key, [])
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list):
                raise self.loc.error(f"{what}: {key} must be a list of group names", *needles)
            for g in value:
                if g not in names:
                    raise self.loc.error(f"{what}: unknown group {g!r}", *needles, key)
            refs[key] = tuple(names.index(g) for g in value)
        if not refs["all"] and not refs["any"]:
            raise self.loc.error(f"{what}: needs 'all' or 'any' groups", *needles)
        within = spec.get("within")
        if within is not None and (not isinstance(within, int) or isinstance(within, bool) or within < 1):
            raise self.loc.error(
                f"{what}: within must be a positive whole number of words", *needles, "within"
            )
        boost = spec.get("boost", 0.0)
        if not _number(boost):
            raise self.loc.error(f"{what}: boost must be a number", *needles, "boost")
        return Clause(label, refs["all"], refs["any"], refs["none"], within, float(boost))

    def _warn_dead(
        self, topic: str, threshold: float, clauses: list[Clause], names: list[str], max_value: list[float]
    ) -> None:
        best = max(self.settings["title_weight"], self.settings["body_weight"])
        used: set[int] = set()
        for c in clauses:
            used.update(c.all, c.any, c.none)
            needles = (f"[[topics.{topic}.clauses]]", f'"{c.name}"')
            clash = set(c.none) & (set(c.all) | (set(c.any) if len(c.any) == 1 else set()))
            if clash:
                self.loc.warn(
                    f"topic {topic!r}: clause {c.name!r} requires and forbids group "
                    f"{names[min(clash)]!r}: it can never match",
                    *needles,
                )
            ceiling = c.boost + best * (sum(max_value[g] for g in c.all) + sum(max_value[g] for g in c.any))
            if ceiling < threshold:
                self.loc.warn(
                    f"topic {topic!r}: clause {c.name!r} scores at most {ceiling:g}, "
                    f"below the threshold {threshold:g}: it can never match",
                    *needles,
                )
        for g_i, g in enumerate(names):
            if g_i not in used:
                self.loc.warn(
                    f"topic {topic!r}: group {g!r} is used by no clause", f"[topics.{topic}.groups.{g}]"
                )

    # -- automaton ----------------------------------------------------------------------------
    def build(self, topics: list[Topic]) -> Rulebook:
        automaton = ahocorasick.Automaton()
        for key, wid in self.word_ids.items():
            automaton.add_word(key, wid)
        automaton.make_automaton()
        lengths = [0] * len(self.word_ids)
        for key, wid in self.word_ids.items():
            lengths[wid] = len(key)
        starts: dict[int, list[int]] = {}
        term_wids: list[tuple[int, ...]] = [()] * len(self.term_ids)
        for wids, tid in self.term_ids.items():
            term_wids[tid] = wids
            starts.setdefault(wids[0], []).append(tid)
        word_key: Callable[[str], str] | None = stem if self.stemmed else None
        return Rulebook(
            topics=topics,
            automaton=automaton,
            key_lengths=lengths,
            term_wids=term_wids,
            starts=starts,
            uses=self.uses,
            field_weights=(self.settings["title_weight"], self.settings["body_weight"]),
            word_key=word_key,
            morphology=self.settings["morphology"],
            source=self.loc.source,
        )
