"""Text normalization shared by rule matching and storage (content hashes).

``fold`` is the one canonical form: Unicode NFKC, case folded, ``ё`` → ``е``, zero-width
characters and soft hyphens removed, every hyphen/dash variant turned into ``-``, every
space variant (no-break, thin, ...) into a plain space, runs of white space collapsed.
Storage hashes ``fold`` output, so its behaviour must stay stable.

``tokenize`` cuts text into words for the rules engine. A word is a run of letters and digits
in any script (Latin incl. ``ə``/``ı``, Cyrillic, Armenian, ...); hyphens, dashes and
apostrophes separate words, so ``азербайджано-армянской`` gives two words and
``Azerbaijan's`` gives ``azerbaijan`` + ``s``. Each token keeps its span in the *original*
text so highlights land on what the reader saw; its ``text`` is the folded form, with the
combining dot that ``casefold`` leaves after Turkish/Azerbaijani ``İ`` dropped (``İlham`` →
``ilham``).
"""

from __future__ import annotations

import re
import unicodedata
from itertools import accumulate
from typing import NamedTuple

# Invisible characters that may sit inside a word (soft hyphen, zero-width space and joiners).
_INVISIBLE = "\u00ad\u200b\u200c\u200d\u2060"
# Regex substitution rather than str.translate: translate with a dict costs ~25x more per call,
# and fold runs on every word of every item. A regular expression's scan for a set of characters
# still costs ~10 ns a character (sre tests the set at every position): text that is all ASCII,
# which ``str.isascii`` knows without reading it (half the shared corpus's real entries), skips
# the scans for characters outside ASCII.
_REMOVED = f"{_INVISIBLE}\ufeff"
_DASH_CHARS = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u058a\u05be\ufe58\ufe63\uff0d"
_REMOVE = re.compile(f"[{_REMOVED}]")
# Both in one scan for ``fold``: a removed character dropped, a dash made "-". The definition
# case-folds between the two steps; case folding neither makes nor changes a character of either
# set (tests/unit/test_textnorm.py checks every code point), so the order does not matter.
_MARKS = re.compile(f"[{_REMOVED}{_DASH_CHARS}]")

# Letters/digits of any script, plus the invisible characters and combining marks that can sit
# inside a word (soft hyphen, zero-width joiners, decomposed accents): they must not split it.
# The plain pattern is twice as fast, so the full one is used only when such characters occur.
# Both capture, so ``split`` returns separators and words alternately, all lengths in C.
_INWORD = f"\u0300-\u036f{_INVISIBLE}"
_WORD_FULL = re.compile(rf"([{_INWORD}]*[^\W_](?:[^\W_]|[{_INWORD}])*)")
_WORD_PLAIN = re.compile(r"([^\W_]+)")
_HAS_INWORD = re.compile(rf"[{_INWORD}]")
# Left behind by casefold("İ") == "i̇"; Azerbaijani and Turkish text is full of İ.
_DOT_ABOVE = "\u0307"
# Stands in for a word that folds to nothing, so word numbering never shifts.
_EMPTY = "_"


class Token(NamedTuple):
    """One word: folded ``text`` and its ``[start, end)`` span in the original string."""

    text: str
    start: int
    end: int


def fold(text: str) -> str:
    """The canonical matching form of ``text`` (see the module docstring)."""
    if text.isascii():  # known in O(1); NFKC, the removed characters and the dashes are not ASCII
        return " ".join(text.lower().split())
    text = _MARKS.sub(_mark, unicodedata.normalize("NFKC", text)).casefold()
    if "ё" in text:
        text = text.replace("ё", "е")
    return " ".join(text.split())


def _mark(found: re.Match[str]) -> str:
    return "" if found[0] in _REMOVED else "-"


def fold_word(word: str) -> str:
    """``fold`` for a single word, as tokens are folded (drops the dot of ``İ``)."""
    return fold(word).replace(_DOT_ABOVE, "").replace(" ", "")


class Words(NamedTuple):
    """Words of a text in the form matching wants them.

    ``folded``: the folded words joined by single spaces (word *i* is ``folded.split(" ")[i]``).
    ``parts``: the original text cut into separator, word, separator, ..., separator; spans are
    only worked out (``offsets``) when something matched, which is the rare case.
    """

    folded: str
    parts: list[str]

    def offsets(self) -> list[int]:
        """Word *i* spans ``text[offsets[2*i + 1]:offsets[2*i + 2]]``."""
        return list(accumulate(map(len, self.parts), initial=0))


def split_words(text: str) -> Words:
    """Cut ``text`` into folded words (see ``Words``); the fast path behind ``tokenize``."""
    full = not text.isascii() and _HAS_INWORD.search(text) is not None
    parts = (_WORD_FULL if full else _WORD_PLAIN).split(text)
    raw = parts[1::2]
    if not raw:
        return Words("", parts)
    # Folding the joined words once is several times faster than word by word. Words hold no
    # dashes or spaces, so only the NFKC/casefold steps of ``fold`` can change them; the result
    # is valid while it keeps one word per word (NFKC may expand e.g. "¼" to "1⁄4").
    joined = " ".join(raw)
    if full:
        joined = _REMOVE.sub("", joined)
    folded = _fold_case(unicodedata.normalize("NFKC", joined))
    if folded.count(" ") != len(raw) - 1 or "  " in folded:
        folded = " ".join(fold_word(w) or _EMPTY for w in raw)
    return Words(folded, parts)


def _fold_case(text: str) -> str:
    """The character-by-character part of folding a word: case folded, ``ё`` as ``е``, the dot
    that ``casefold`` leaves after ``İ`` dropped (``in`` first: a scan in C, cheaper than a
    replace that finds nothing)."""
    text = text.casefold()
    if "ё" in text:
        text = text.replace("ё", "е")
    return text.replace(_DOT_ABOVE, "") if _DOT_ABOVE in text else text


def screen_fold(text: str) -> str:
    """The whole of ``text`` folded as ``split_words`` folds each word when ``text`` is in NFKC
    (the invisible characters dropped, then ``_fold_case``): every word of it, folded, is a
    substring of this (the rules engine's screen). U+FEFF, which ``_REMOVE`` also drops, is no
    part of a word: it stays. ASCII text, which ``str.isascii`` knows without reading it, holds
    none of the characters dropped or replaced, and its case folding is ``lower``: 0.3 µs
    against 0.9 for a 360-character teaser (a field of every new item is screened)."""
    if text.isascii():
        return text.lower()
    for invisible in _INVISIBLE:
        if invisible in text:  # a scan in C: ~5x cheaper than a regex over a long text
            text = text.replace(invisible, "")
    return _fold_case(text)


def tokenize(text: str) -> list[Token]:
    """The words of ``text``, folded, with their spans in ``text`` (see the module docstring)."""
    words = split_words(text)
    if not words.folded:
        return []
    offsets = words.offsets()
    folded = words.folded.split(" ")
    return [Token(w, offsets[2 * i + 1], offsets[2 * i + 2]) for i, w in enumerate(folded)]


def words(text: str) -> list[str]:
    """Just the folded words of ``text``."""
    folded = split_words(text).folded
    return folded.split(" ") if folded else []


def collapse_space(text: str) -> str:
    r"""Each line's white space collapsed to single spaces, blank lines dropped, lines joined by
    one newline (feed texts in ``normalize.html_to_text``, pages in ``extract``).

    ``str.split`` does this in C: the regular expressions that did it before (``[^\S\n]+`` then
    ``\s*\n\s*``) try a match at every character: 15 µs against 3.4 on the benchmark farm's
    350-character teasers, where all of ``html_to_text`` took 29.5 µs and now 17.5. Both read
    white space as ``str.isspace`` does (no-break space included); tests/unit/test_normalize.py
    holds the two equal. A text of one line (a title, a name) is one ``split``: 0.42 µs against
    0.83 for a 46-character title through the lines' generator."""
    if "\n" not in text:
        return " ".join(text.split())
    return "\n".join(filter(None, (" ".join(line.split()) for line in text.split("\n"))))
