"""Term syntax: from a rule string to the word patterns the automaton looks for.

A term is one or more words; words are split on spaces and hyphens exactly as text is
(``Azerbaijani-Armenian`` is the phrase ``azerbaijani armenian``). A word ending in ``*`` matches
any word starting with it; ``алиев(|а|у|ым)`` spells explicit word forms (``алиев``, ``алиева``,
...). Terms are folded like text, so case, ``ё`` and dash variants do not matter.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from feedwatch.textnorm import fold, tokenize

_ALTERNATION = re.compile(r"\(([^()]*)\)")
_SPECIAL = "*()|"


@dataclass(frozen=True, order=True)
class WordPattern:
    """One word of a term: the folded ``text``, and whether any word *starting* with it counts."""

    text: str
    prefix: bool


class TermSyntaxError(ValueError):
    """A term string that cannot be parsed; the compiler adds file and line."""


def expand_forms(term: str) -> list[str]:
    """``алиев(|а|у)`` → ``["алиев", "алиева", "алиеву"]``; plain terms come back alone."""
    if term.count("(") != term.count(")"):
        raise TermSyntaxError(f"unbalanced parentheses in {term!r}")
    parts = _ALTERNATION.split(term)
    if any(c in p for p in parts[0::2] for c in "()"):
        raise TermSyntaxError(f"nested or stray parentheses in {term!r}")
    if any("|" in p for p in parts[0::2]):
        raise TermSyntaxError(f"'|' outside parentheses in {term!r}")
    choices = [[p] if i % 2 == 0 else p.split("|") for i, p in enumerate(parts)]
    return ["".join(combo) for combo in itertools.product(*choices)]


def parse_words(form: str, min_prefix: int) -> tuple[WordPattern, ...]:
    """Word patterns of one expanded form (no parentheses left)."""
    out: list[WordPattern] = []
    for chunk in fold(form).split(" "):
        if not chunk:
            continue
        star = chunk.endswith("*")
        body = chunk[:-1] if star else chunk
        if "*" in body:
            raise TermSyntaxError(f"'*' may only end a word, in {form!r}")
        pieces = [t.text for t in tokenize(body)]
        if not pieces:
            raise TermSyntaxError(f"no letters in word {chunk!r} of {form!r}")
        if star and len(pieces[-1]) < min_prefix:
            raise TermSyntaxError(
                f"wildcard {chunk!r} is shorter than {min_prefix} letters and would match almost anything"
            )
        out.extend(WordPattern(p, False) for p in pieces[:-1])
        out.append(WordPattern(pieces[-1], star))
    if not out:
        raise TermSyntaxError("empty term")
    return tuple(out)


def parse_term(term: str, min_prefix: int = 3) -> list[tuple[WordPattern, ...]]:
    """Every word sequence a term stands for (one per explicit form)."""
    if not term.strip():
        raise TermSyntaxError("empty term")
    return [parse_words(form, min_prefix) for form in expand_forms(term)]
