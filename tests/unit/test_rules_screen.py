"""The rules engine's screen (``Rulebook._may_hit``) never changes an answer: a field it turns
away could not have hit. Checked against the engine without its screen, on generated text made
of the shipped rules' own words, their neighbours and every kind of character the folding
treats specially, and on the assumption the screen rests on, for every code point."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from feedwatch.rules import Rulebook, load_rulebook
from feedwatch.textnorm import _INVISIBLE, split_words

RULES = Path(__file__).resolve().parents[2] / "config" / "rules.toml"
_SCREENED = load_rulebook(RULES)
_UNSCREENED = load_rulebook(RULES)
_UNSCREENED._screen = None  # every field cut into words, as before the screen


def _words(book: Rulebook) -> list[str]:
    return sorted(key.strip(" ") for key, _ in book._automaton.items())


_TERM_WORDS = _words(_SCREENED)
# Characters that folding maps, drops or keeps inside words: case pairs (İ, Ё, ẞ, Σ/ς),
# compatibility forms (ﬁ, fullwidth, ª), decomposed and composed accents, the invisible
# in-word characters, U+FEFF (a separator), underscore, digits, apostrophes and dashes.
_ODD = list("İIıiЁёЕеẞßΣσςﬁＡａªÅÅéé\u00ad\u200b\u200c\u200d\u2060\ufeff_09'’-–—. \n\t,«»\u0307\u0345")
_PIECES = st.one_of(
    st.sampled_from(_TERM_WORDS),
    st.sampled_from(_TERM_WORDS).map(str.upper),
    st.sampled_from(_TERM_WORDS).map(str.title),
    st.text(alphabet=st.sampled_from(_ODD + list("abcxyzабвгհայ")), max_size=4),
)


@settings(max_examples=4000, deadline=None)
@given(st.lists(_PIECES, max_size=10).map("".join), st.lists(_PIECES, max_size=10).map(" ".join))
@example("Azerbaijan and Russia", "talks in Baku on the row")
@example("AZƏRBAYCAN", "Rusiya ilə Azərbaycan")
@example("azer\u00adbaijan", "Азер\u200bбайджан\ufeffРоссия")
@example("РОССИЯ", "россия и азербаиджан")
@example("", "armenian")  # "armenia" is a word and a prefix: screened as the prefix
def test_the_screen_turns_away_only_fields_that_cannot_hit(title: str, body: str) -> None:
    assert _SCREENED.assess(title, body) == _UNSCREENED.assess(title, body)
    for text in (title, body):
        if not _SCREENED._may_hit(text):
            assert _UNSCREENED._scan_field(0, split_words(text)) == []


def test_no_character_outside_a_word_case_folds_to_a_letter_or_digit() -> None:
    """What the screen's boundary check assumes: around a word the folded text holds a
    character that is no letter or digit. U+0345 folds to ι, but it is an in-word character
    (a combining mark), never a separator."""
    inword = {chr(c) for c in range(0x300, 0x370)} | set(_INVISIBLE)  # textnorm._INWORD's class
    found = [
        hex(code)
        for code in range(sys.maxunicode + 1)
        if not (0xD800 <= code <= 0xDFFF)
        and not chr(code).isalnum()
        and chr(code) not in inword
        and any(ch.isalnum() for ch in chr(code).casefold())
    ]
    assert found == []


def test_the_screen_lets_through_what_hits_and_turns_away_the_rest() -> None:
    assert _SCREENED._may_hit("Talks between Azerbaijan and Russia")
    assert _SCREENED._may_hit("ТАСС: Россия")
    assert not _SCREENED._may_hit("Growth slowed tomorrow, said the council, throwing a budget")
    assert not _SCREENED._may_hit("City council approves new budget for parks")
