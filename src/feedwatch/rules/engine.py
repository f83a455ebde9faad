"""Matching: one automaton pass per field, then boolean and proximity logic on the hits.

Words of a field are joined as `` w1 w2 … wn `` (one space around each) and scanned once by an
Aho-Corasick automaton that holds every word pattern of every topic: `` word `` for an exact
word, `` prefix`` for a wildcard. The pass costs the length of the text plus the number of hits,
not the number of rules. Phrases are checked on the hits (word *k* of the phrase on token i+k).
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Sequence
from itertools import accumulate, count
from operator import add
from typing import Any, NamedTuple

import ahocorasick

from feedwatch.immutable import immutable
from feedwatch.rules.model import Clause, Hit, TermUse, Topic, TopicMatch
from feedwatch.textnorm import Words, screen_fold, split_words

FIELDS = ("title", "body")
SNIPPET_CHARS = 200
_FEW_HITS = 48
# Patterns found inside words before the screen gives up and reads the field (a rulebook of
# thousands of short prefixes finds one in most words; each costs a step in Python).
_SCREEN_TRIES = 16
# Longer fields are cut into words without screening: the longer a text, the likelier it holds
# some rule word, and where it does the screen is spent for nothing (~10 % of matching a 3 KB
# text of benchmarks/rules_bench.py, where every text holds some). Titles and teasers, most of
# what the service reads, are shorter.
_SCREEN_MAX_CHARS = 1_000


class _Occ(NamedTuple):
    """A term occurrence, with the group it counts for and its token index (for proximity)."""

    use: TermUse
    field: int
    pos: int
    hit: Hit


@immutable
class _Evidence:
    group_value: dict[int, float]
    occs: dict[int, list[_Occ]]


class Rulebook:
    """Compiled rules; build with ``compile_rulebook`` or ``load_rulebook``. Immutable after
    construction, so one instance may be shared by threads and forked workers."""

    def __init__(
        self,
        *,
        topics: Sequence[Topic],
        automaton: Any,
        key_lengths: Sequence[int],
        term_wids: Sequence[tuple[int, ...]],
        starts: dict[int, list[int]],
        uses: Sequence[Sequence[TermUse]],
        field_weights: tuple[float, float],
        word_key: Callable[[str], str] | None,
        morphology: str,
        source: str,
    ) -> None:
        self._topics = tuple(topics)
        self.topics: list[str] = [t.name for t in self._topics]
        self._automaton = automaton
        self._key_lengths = tuple(key_lengths)
        self._term_wids = tuple(term_wids)
        self._starts = starts
        self._uses = tuple(tuple(u) for u in uses)
        self._field_weights = field_weights
        self._word_key = word_key
        self.morphology = morphology
        self.source = source
        self.term_count = len(self._term_wids)
        # Stems are not substrings of the text: no screen then.
        self._screen = _screen(automaton, self._term_wids) if word_key is None else None
        self._anchors = frozenset(
            (t_i, g)
            for t_i, topic in enumerate(self._topics)
            for c in topic.clauses
            for g in (c.all[:1] or c.any)
        )

    # -- public -------------------------------------------------------------------------------
    def match(self, title: str, body: str, lang: str | None = None) -> list[TopicMatch]:
        """Topics whose score reaches their threshold, best first. ``lang`` is accepted as a
        hint but not needed: scripts, not language tags, decide how words are read."""
        return self.assess(title, body)[0]

    def candidate(self, title: str, body: str) -> bool:
        """True when some clause's anchor group (its first ``all`` group, or any of its ``any``
        groups when it has none) occurs: the item might match once its full text is read.
        Context-only groups (interaction words, "war", "talks") do not make a candidate."""
        return self._anchored(self._scan((title or "", body or "")))

    def assess(
        self, title: str, body: str, split: Callable[[str], Words] = split_words
    ) -> tuple[list[TopicMatch], bool]:
        """``match`` and ``candidate`` from one scan of the text: the pipeline asks both of
        every new article (the second scan was ~6 % of a worker's ingest samples). ``split``
        cuts a field into words (``textnorm.split_words``; the pipeline's keeps what it cut)."""
        texts = (title or "", body or "")
        occs = self._scan(texts, split)
        if not occs:
            return [], False
        out = [m for t_i in range(len(self._topics)) if (m := self._topic(t_i, occs, texts))]
        return sorted(out, key=lambda m: -m.score), self._anchored(occs)

    def _anchored(self, occs: list[_Occ]) -> bool:
        return any((o.use.topic, o.use.group) in self._anchors for o in occs)

    # -- scanning -----------------------------------------------------------------------------
    def _scan(self, texts: tuple[str, str], split: Callable[[str], Words] = split_words) -> list[_Occ]:
        occs: list[_Occ] = []
        for f_i, text in enumerate(texts):
            if text and self._may_hit(text):
                occs.extend(self._scan_field(f_i, split(text)))
        return occs

    def _may_hit(self, text: str) -> bool:
        """False only when no word of ``text`` can hit: no word pattern occurs anywhere in the
        whole text folded as its words are (``textnorm.screen_fold``). Cutting the text into
        words cost more than the rest of the matching, and most fields hold no pattern (95 % of
        the benchmark farm's, 62 % of the shared corpora's entries).

        Exact, not a guess: when the text is in NFKC already (nearly all text; otherwise the
        answer is "maybe"), a word's folded form is its characters case-folded, ``ё`` as ``е``,
        invisible characters and the dot of ``İ`` dropped, each on its own: the same
        characters of the whole text folded the same way. A hit's word equals or starts with
        its pattern, so the pattern occurs in the folded text. tests/unit/test_rules_screen.py
        holds the screened and unscreened answers equal on generated text, and the one
        assumption (no character outside a word case-folds to a letter or digit) is checked
        there for every code point."""
        if (
            self._screen is None
            or len(text) > _SCREEN_MAX_CHARS
            or not unicodedata.is_normalized("NFKC", text)
        ):
            return True
        folded = screen_fold(text)
        for tried, (end, (length, exact)) in enumerate(self._screen.iter(folded)):
            # A hit's word starts where its pattern does (and, for an exact word, ends where it
            # does): around a word the folded text holds a separator, and no separator folds to
            # a letter or digit.
            start = end - length + 1
            inside = (start > 0 and folded[start - 1].isalnum()) or (
                exact and end + 1 < len(folded) and folded[end + 1].isalnum()
            )
            if not inside or tried >= _SCREEN_TRIES:
                return True  # at a word; or found inside words all along (a big rulebook): read it
        return False

    def _scan_field(self, f_i: int, words: Words) -> list[_Occ]:
        if not words.folded:
            return []
        text = words.folded
        if self._word_key is not None:
            text = " ".join(map(self._word_key, text.split(" ")))
        joined = f" {text} "
        found = list(self._automaton.iter(joined))
        if not found:
            return []
        at: dict[int, set[int]] = defaultdict(set)
        if len(found) < _FEW_HITS:
            # Counting spaces before each hit beats building a position table for every word.
            for end, wid in found:
                at[joined.count(" ", 0, end - self._key_lengths[wid] + 2) - 1].add(wid)
        else:
            lengths = map(len, text.split(" "))
            starts = list(map(add, accumulate(lengths, initial=0), count(1)))
            for end, wid in found:
                at[bisect_left(starts, end - self._key_lengths[wid] + 2)].add(wid)
        offsets: list[int] | None = None
        field_weight = self._field_weights[f_i]
        field = FIELDS[f_i]
        occs: list[_Occ] = []
        for i, wids in at.items():
            for wid in wids:
                for tid in self._starts.get(wid, ()):
                    pattern = self._term_wids[tid]
                    n = len(pattern)
                    if n > 1 and not all(pattern[k] in at.get(i + k, ()) for k in range(1, n)):
                        continue
                    offsets = offsets or words.offsets()
                    start, end = offsets[2 * i + 1], offsets[2 * (i + n - 1) + 2]
                    for use in self._uses[tid]:
                        hit = Hit(use.source, field, start, end, use.weight * field_weight)
                        occs.append(_Occ(use, f_i, i, hit))
        return occs

    # -- scoring ------------------------------------------------------------------------------
    def _evidence(self, t_i: int, occs: list[_Occ]) -> _Evidence:
        value: dict[int, float] = {}
        by_group: dict[int, list[_Occ]] = defaultdict(list)
        for occ in occs:
            if occ.use.topic == t_i:
                g = occ.use.group
                by_group[g].append(occ)
                value[g] = max(value.get(g, 0.0), occ.hit.weight)
        return _Evidence(value, by_group)

    def _clause_score(self, clause: Clause, ev: _Evidence) -> float | None:
        present = ev.group_value
        if not all(g in present for g in clause.all):
            return None
        if clause.any and not any(g in present for g in clause.any):
            return None
        if any(g in present for g in clause.none):
            return None
        if clause.within is not None and not _near(clause, ev, clause.within):
            return None
        used = [*clause.all, *(g for g in clause.any if g in present)]
        return clause.boost + sum(present[g] for g in used)

    def _topic(self, t_i: int, occs: list[_Occ], texts: tuple[str, str]) -> TopicMatch | None:
        topic = self._topics[t_i]
        ev = self._evidence(t_i, occs)
        if not ev.group_value:
            return None
        satisfied = [(score, c) for c in topic.clauses if (score := self._clause_score(c, ev)) is not None]
        if not satisfied:
            return None
        best = max(score for score, _ in satisfied)
        if best < topic.threshold:
            return None
        groups = sorted({g for _, c in satisfied for g in (*c.all, *c.any) if g in ev.group_value})
        hits = sorted(
            {o.hit for g in groups for o in ev.occs[g]}, key=lambda h: (-h.weight, h.field, h.start)
        )
        terms = list(dict.fromkeys(h.term for h in hits))
        return TopicMatch(
            topic=topic.name,
            score=best,
            terms=terms,
            hits=sorted(hits, key=lambda h: (FIELDS.index(h.field), h.start)),
            snippet=_snippet(texts[FIELDS.index(hits[0].field)], hits[0]),
            threshold=topic.threshold,
            clauses=[c.name for s, c in satisfied if s >= topic.threshold],
            groups={topic.groups[g]: ev.group_value[g] for g in groups},
        )


def _screen(automaton: Any, term_wids: Sequence[tuple[int, ...]]) -> Any:
    """The automaton ``Rulebook._may_hit`` scans with: of every term, its longest word pattern
    without the spaces, valued (length, exact). A term hits only where all its words do, so a
    field holding none of these cannot hit; the longest, because phrases hold "in", "и", "the".
    A word that is also some term's prefix is screened as a prefix."""
    word = {wid: key for key, wid in automaton.items()}  # " word " exact, " prefix" not
    exact: dict[str, bool] = {}
    for wids in term_wids:
        key = max((word[w] for w in wids), key=len)
        bare = key.strip(" ")
        exact[bare] = exact.get(bare, True) and key.endswith(" ")
    screen = ahocorasick.Automaton()
    for bare, whole in exact.items():
        screen.add_word(bare, (len(bare), whole))
    screen.make_automaton()
    return screen


def _near(clause: Clause, ev: _Evidence, within: int) -> bool:
    """Some hit of the first ``all`` group has, in the same field and within ``within`` words,
    a hit of every other ``all`` group and of at least one ``any`` group (if any are listed)."""
    anchors = clause.all or clause.any
    rest = clause.all[1:] if clause.all else ()
    optional = clause.any if clause.all else ()

    def close(a: _Occ, group: int) -> bool:
        return any(o.field == a.field and abs(o.pos - a.pos) <= within for o in ev.occs.get(group, ()))

    for anchor_group in anchors[:1] if clause.all else anchors:
        for a in ev.occs.get(anchor_group, ()):
            if all(close(a, g) for g in rest) and (not optional or any(close(a, g) for g in optional)):
                return True
    return False


def _snippet(text: str, hit: Hit) -> str:
    """About SNIPPET_CHARS of ``text`` centred on ``hit``, cut at spaces."""
    if len(text) <= SNIPPET_CHARS:
        return text.strip()
    half = (SNIPPET_CHARS - (hit.end - hit.start)) // 2
    lo = max(0, hit.start - max(half, 0))
    hi = min(len(text), lo + SNIPPET_CHARS)
    lo = max(0, hi - SNIPPET_CHARS)
    if lo > 0 and (sp := text.find(" ", lo, hit.start)) != -1:
        lo = sp + 1
    if hi < len(text) and (sp := text.rfind(" ", hit.end, hi)) != -1:
        hi = sp
    return ("…" if lo > 0 else "") + text[lo:hi].strip() + ("…" if hi < len(text) else "")
