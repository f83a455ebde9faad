"""Keyword rules: which topics a news item is about, and why.

Rule semantics, in the order they apply (``config/rules.toml``; docs/rules.md has examples):

1. Text is read as words (``feedwatch.textnorm.tokenize``): folded case, ``ё`` = ``е``, any
   script; hyphens and apostrophes split words, punctuation is ignored. Title and body (the
   feed summary or fetched text) are read separately.
2. A *term* is a word, a phrase (consecutive words, ``peace treaty``), a wildcard
   (``азербайджан*``: any word starting so) or explicit forms (``алиев(|а|у|ым)``). A term
   written with a hyphen is the phrase of its parts. Under ``morphology = "stem"`` words and
   terms are compared by Snowball stem instead.
3. Terms sit in named *groups* of a topic; each term has a weight (the group's unless given).
   A hit is worth term weight × field weight (``title_weight``, default 2; ``body_weight``, 1).
   A group is *present* when any of its terms occurs; its value is its best hit, so repeating a
   word adds nothing. ``[lists]`` hold reusable term lists, included as ``"@name"``.
4. A topic has *clauses*. A clause holds when every ``all`` group is present, at least one
   ``any`` group is (if listed), no ``none`` group is, and, with ``within = N``, some hit of the
   first ``all`` group has hits of the other ``all`` groups (and of one ``any`` group) no more
   than N words away in the same field.
5. A clause scores ``boost`` + the values of its present ``all``/``any`` groups. The topic score
   is its best clause's score; the topic matches when that reaches ``threshold``.

``candidate`` (choosing items worth a full-text fetch) is true when some clause's first ``all``
group (or, without ``all``, one of its ``any`` groups) occurs; context words alone never count.

Matching is pure (no I/O, clock or shared state). Invalid rules raise ``RulesError`` naming
file, line and reason; rules that can never match raise a ``RulesWarning``.
"""

from feedwatch.rules.compile import compile_rulebook, load_rulebook
from feedwatch.rules.engine import Rulebook
from feedwatch.rules.model import Hit, RulesError, RulesWarning, TopicMatch

__all__ = [
    "Hit",
    "Rulebook",
    "RulesError",
    "RulesWarning",
    "TopicMatch",
    "compile_rulebook",
    "load_rulebook",
]
