"""Text normalization shared by rule matching and storage (content hashes).

``fold`` is the one canonical form: Unicode NFKC, case folded, ``ё`` → ``е``, zero-width
characters and soft hyphens removed, every hyphen/dash variant turned into ``-``, every
space variant (no-break, thin, ...) into a plain space, runs of white space collapsed.
"""

from __future__ import annotations

import re
import unicodedata

_REMOVE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"), None)
_DASHES = re.compile(r"[\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u058a\u05be\ufe58\ufe63\uff0d]")
_SPACES = re.compile(r"\s+")


def fold(text: str) -> str:
    """The canonical matching form of ``text`` (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text).translate(_REMOVE)
    text = text.casefold().replace("ё", "е")
    text = _DASHES.sub("-", text)
    return _SPACES.sub(" ", text).strip()
