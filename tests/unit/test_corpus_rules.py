"""Every corpus file through parse → normalize → the shipped rules: no unhandled exception.

One test per file, so pytest-timeout bounds each file on its own (a pathological file fails by
name instead of stalling the sweep). ``ParseError`` is an accepted outcome; anything else raised
by any stage fails that file. Run with ``-s`` for the figures (files, entries, matched per topic).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from feedwatch import stories
from feedwatch.normalize import normalize_feed
from feedwatch.parse import ParseError, parse_feed
from feedwatch.pipeline import match_drafts
from feedwatch.rules import Rulebook, load_rulebook
from feedwatch.textnorm import split_words

pytestmark = pytest.mark.corpus

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "corpus"
ROOTS = (CORPUS / "feedparser-tests", CORPUS / "feeds")
FETCHED = datetime(2025, 9, 1, 12, 0)
PER_FILE_SECONDS = 10  # the slowest file takes well under a second; this catches a hang

FILES = sorted(
    p for root in ROOTS if root.is_dir() for p in root.rglob("*") if p.is_file() and p.name != "LICENSE"
)
TALLY: Counter[str] = Counter()


@pytest.fixture(scope="module")
def rulebook() -> Rulebook:
    return load_rulebook(REPO / "config" / "rules.toml")


@pytest.fixture(scope="module", autouse=True)
def _figures() -> Iterator[None]:
    yield
    topics = {k: v for k, v in sorted(TALLY.items()) if k.startswith("topic:")}
    print(
        f"\ncorpus through the rules: files={TALLY['files']} parsed={TALLY['parsed']}"
        f" parse_error={TALLY['parse_error']} not_a_feed={TALLY['not_a_feed']}"
        f" entries={TALLY['entries']} matched={TALLY['matched']} {topics}"
    )


def test_corpus_present() -> None:
    if not FILES:
        pytest.skip(f"shared corpus not present at {CORPUS} (a fresh clone has no ../shared)")


@pytest.mark.timeout(PER_FILE_SECONDS)
@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(CORPUS)) for p in FILES])
def test_file_through_the_rules(path: Path, rulebook: Rulebook) -> None:
    TALLY["files"] += 1
    url = f"https://corpus.example/{path.name}"
    try:
        feed = parse_feed(path.read_bytes(), headers={}, url=url)
    except ParseError as exc:
        TALLY[exc.error_class] += 1
        return
    drafts = normalize_feed(feed, feed_url=url, configured_language=None, fetched_at=FETCHED)
    matched, _, folded = match_drafts(rulebook, drafts)
    TALLY["parsed"] += 1
    TALLY["entries"] += len(drafts)
    TALLY["matched"] += len(matched)
    for matches in matched.values():
        TALLY.update(f"topic:{m.topic}" for m in matches)
    assert set(matched) <= {d.identity_key for d in drafts}
    # The words the rules cut a matched draft's fields into are the signature's own words.
    flagged = [(d.title, d.text) for d in drafts if d.identity_key in matched]
    assert set(folded) <= {field for pair in flagged for field in pair}
    assert all(folded[text] == split_words(text).folded for text in folded)
    assert stories.signatures(flagged, folded) == stories.signatures(flagged)
