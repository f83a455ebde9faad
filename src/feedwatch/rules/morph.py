"""Morphology modes: how word forms are brought together before lookup.

``wildcard`` (the default) looks words up as written; analysts cover inflection with ``*``
prefixes and explicit forms. ``stem`` runs every text word and every term word through the
Snowball stemmer of its script (Cyrillic → Russian, Armenian → Armenian, Latin with Azerbaijani
letters → Turkish, other Latin → English) and compares stems; ``*`` then only marks the word
as stemmed like any other. docs/rules.md has the measured comparison of the two.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

import snowballstemmer

Morphology = Literal["wildcard", "stem"]
MORPHOLOGIES: tuple[Morphology, ...] = ("wildcard", "stem")

_AZ_LETTERS = frozenset("əğıışçöü")


def _algorithm(word: str) -> str | None:
    for ch in word:
        if "\u0400" <= ch <= "\u04ff":
            return "russian"
        if "\u0530" <= ch <= "\u058f":
            return "armenian"
    if any(ch in _AZ_LETTERS for ch in word):
        return "turkish"
    if word.isascii() and word.isalpha():
        return "english"
    return None


@lru_cache(maxsize=8)
def _stemmer(algorithm: str) -> Any:
    return snowballstemmer.stemmer(algorithm)


# A memo, not state: the same word always gives the same stem, so caching cannot change results.
@lru_cache(maxsize=100_000)
def stem(word: str) -> str:
    """The Snowball stem of one folded word (the word itself when no stemmer fits)."""
    algorithm = _algorithm(word)
    if algorithm is None:
        return word
    result: str = _stemmer(algorithm).stemWord(word)
    return result or word
