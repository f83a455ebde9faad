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
from typing import NamedTuple

_REMOVE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"), None)
_DASHES = re.compile(r"[\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u058a\u05be\ufe58\ufe63\uff0d]")
_SPACES = re.compile(r"\s+")

# Letters/digits of any script, plus the invisible characters and combining marks that can sit
# inside a word (soft hyphen, zero-width joiners, decomposed accents): they must not split it.
_WORD = re.compile(r"(?:[^\W_]|[\u0300-\u036f\u00ad\u200b\u200c\u200d\u2060])+")
# Left behind by casefold("İ") == "i̇"; Azerbaijani and Turkish text is full of İ.
_TOKEN_EXTRA = dict.fromkeys(map(ord, "\u0307"), None)


class Token(NamedTuple):
    """One word: folded ``text`` and its ``[start, end)`` span in the original string."""

    text: str
    start: int
    end: int


def fold(text: str) -> str:
    """The canonical matching form of ``text`` (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text).translate(_REMOVE)
    text = text.casefold().replace("ё", "е")
    text = _DASHES.sub("-", text)
    return _SPACES.sub(" ", text).strip()


def fold_word(word: str) -> str:
    """``fold`` for a single word, as tokens are folded (drops the dot of ``İ``)."""
    return fold(word).translate(_TOKEN_EXTRA).replace(" ", "")


def tokenize(text: str) -> list[Token]:
    """The words of ``text``, folded, with their spans in ``text`` (see the module docstring)."""
    spans = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    if not spans:
        return []
    raw = [text[s:e] for s, e in spans]
    # Folding the joined words once is several times faster than folding word by word; it is
    # only valid while folding keeps one word per word (NFKC may expand e.g. "¼" to "1⁄4").
    folded = fold(" ".join(raw)).translate(_TOKEN_EXTRA).split(" ")
    if len(folded) != len(raw) or not all(folded):
        folded = [fold_word(w) for w in raw]
    return [Token(f, s, e) for f, (s, e) in zip(folded, spans, strict=True) if f]


def words(text: str) -> list[str]:
    """Just the folded words of ``text``."""
    return [t.text for t in tokenize(text)]
