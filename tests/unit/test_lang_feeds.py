"""Every real feed of the shared corpus normalizes to the same drafts, languages included, whether
the languages come from the compact model in one batch per feed (normalize_feed), from it one
entry at a time (normalize_entry), or from py3langid itself one text at a time; and their HTML
reads the same with and without the inline fast path."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from feedwatch import normalize
from feedwatch.normalize import ArticleDraft
from feedwatch.parse import ParsedFeed, ParseError, parse_feed

pytestmark = pytest.mark.corpus

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
FETCHED = datetime(2025, 9, 1, 12, 0)


class _OneByOne:
    """py3langid's identifier behind the compact model's interface, one text at a time."""

    def __init__(self, identifier: Any) -> None:
        self.identifier = identifier

    def classify_many(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        return [self.identifier.classify(text) for text in texts]


@pytest.fixture(scope="module")
def reference() -> _OneByOne:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages([code for code in identifier.labels if len(code) == 2])
    return _OneByOne(identifier)


def _feeds() -> Iterator[tuple[str, ParsedFeed]]:
    if not SHARED.is_dir():
        pytest.skip(f"shared corpus not present at {SHARED}")
    for root in ("feeds", "feedparser-tests"):
        for path in sorted((SHARED / root).rglob("*")):
            if path.is_file() and path.name != "LICENSE":
                url = f"https://corpus.example/{path.name}"
                try:
                    yield url, parse_feed(path.read_bytes(), headers={}, url=url)
                except ParseError:
                    continue


def _one_by_one(feed: ParsedFeed, url: str, language: str | None) -> list[ArticleDraft]:
    feed_language = normalize._language_code(feed.language) or normalize._language_code(language)
    drafts: dict[str, ArticleDraft] = {}
    for entry in feed.entries:
        draft = normalize.normalize_entry(
            entry, feed_url=url, feed_language=feed_language, fetched_at=FETCHED
        )
        drafts.setdefault(draft.identity_key, draft)
    return list(drafts.values())


def test_real_feeds_same_drafts_and_languages(monkeypatch: pytest.MonkeyPatch, reference: _OneByOne) -> None:
    feeds = list(_feeds())
    compared = 0
    for language in (None, "en", "ru"):
        batched = [
            normalize.normalize_feed(feed, feed_url=url, configured_language=language, fetched_at=FETCHED)
            for url, feed in feeds
        ]
        singly = [_one_by_one(feed, url, language) for url, feed in feeds]
        with monkeypatch.context() as patched:
            patched.setattr(normalize, "_identifier", lambda: reference)
            by_py3langid = [
                normalize.normalize_feed(feed, feed_url=url, configured_language=language, fetched_at=FETCHED)
                for url, feed in feeds
            ]
        assert batched == singly == by_py3langid
        compared += sum(map(len, batched))
    assert compared > 3 * 2000
    assert sum(d.language is not None for drafts in batched for d in drafts) > 1500


def test_real_feeds_text_without_an_html_parser_equals_nh3s(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every title, summary, content and author of the corpora reads the same through the inline
    fast path (``normalize._inline_text``) as through nh3, and most HTML takes the fast path."""
    fields = [
        value
        for _, feed in _feeds()
        for entry in feed.entries
        for value in (entry.title, entry.summary_html, entry.content_html, entry.author or "")
        if "<" in value or "&" in value
    ]
    fast = [normalize.html_to_text(value) for value in fields]
    taken = sum(normalize._inline_text(normalize._BLOCK_TAG.sub("\n", value)) is not None for value in fields)
    with monkeypatch.context() as patched:
        patched.setattr(normalize, "_inline_text", lambda marked: None)
        assert [normalize.html_to_text(value) for value in fields] == fast
    assert len(fields) > 1000
    assert taken > len(fields) // 2, (taken, len(fields))
