"""The fingerprints a feed's row keeps of its stored entries, and what the parse skips for them."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

from support.feeds import item, rss

from feedwatch import known
from feedwatch.parse import parse_feed

FEED = "https://feeds.example/rss"


# One fixed date: bodies built at different moments must still compare equal.
DATE = datetime(2026, 11, 30, 10, tzinfo=UTC)


def _body(seqs: range) -> bytes:
    urls = {s: f"https://example.org/a/{s}" for s in seqs}
    return rss([item(urls[s], f"Title {s}", f"<p>Text {s}</p>", urls[s], DATE) for s in seqs])


def _stored(seqs: range, feed_url: str = FEED) -> bytes:
    return known.fingerprints(parse_feed(_body(seqs), headers={}, url=feed_url))


def test_nothing_stored_means_no_predicate() -> None:
    assert known.predicate(None) is None
    assert known.predicate(b"") is None


def test_stored_entries_are_known_and_their_texts_are_skipped() -> None:
    stored = known.predicate(_stored(range(0, 5)))
    full = parse_feed(_body(range(0, 7)), headers={}, url=FEED)
    marked = parse_feed(_body(range(0, 7)), headers={}, url=FEED, known=stored)
    assert [e.known for e in marked.entries] == [True] * 5 + [False] * 2
    for plain, lazy in zip(full.entries, marked.entries, strict=True):
        # Identity and dates always (the schedule reads every entry's date) ...
        for name in ("guid", "link", "base", "published", "updated"):
            assert getattr(lazy, name) == getattr(plain, name)
        # ... the texts only where the entry is not known.
        if lazy.known:
            assert (lazy.title, lazy.summary_html, lazy.author) == ("", "", None)
        else:
            assert lazy == plain


def test_fingerprints_are_per_feed_url() -> None:
    """Identity keys of non-URL guids depend on the feed URL: so do fingerprints."""
    other = "https://mirror.example/rss"
    marked = parse_feed(
        _body(range(0, 3)), headers={}, url=other, known=known.predicate(_stored(range(0, 3), other))
    )
    assert all(e.known for e in marked.entries)
    elsewhere = known.predicate(_stored(range(0, 3)))  # stored when the feed was at FEED
    assert not any(
        e.known for e in parse_feed(_body(range(0, 3)), headers={}, url=other, known=elsewhere).entries
    )


def test_the_feedparser_path_marks_known_entries_and_keeps_their_texts() -> None:
    body = _body(range(0, 3)).replace(b'<rss version="2.0">', b'<rss version="0.91">')
    parsed = parse_feed(body, headers={}, url=FEED)
    stored = known.fingerprints(dataclasses.replace(parsed, entries=parsed.entries[:2]))
    marked = parse_feed(body, headers={}, url=FEED, known=known.predicate(stored))
    assert [e.known for e in marked.entries] == [True, True, False]
    full = parse_feed(body, headers={}, url=FEED)
    assert [dataclasses.replace(e, known=False) for e in marked.entries] == list(full.entries)


def test_entries_without_guid_and_link_are_never_known() -> None:
    body = rss(["<item><title>Only a title</title><description>text</description></item>"])
    parsed = parse_feed(body, headers={}, url=FEED)
    assert known.fingerprints(parsed) == b""


def test_a_json_feed_s_entries_carry_their_fingerprints() -> None:
    """JSON Feed entries are fingerprinted by the parse like XML ones (the row lists them)."""
    doc = {"version": "https://jsonfeed.org/version/1.1", "title": "J",
           "items": [{"id": "a-1", "url": "https://example.org/a/1", "content_text": "x"},
                     {"id": "a-2", "content_text": "y"}, {"content_text": "no identity"}]}  # fmt: skip
    parsed = parse_feed(json.dumps(doc).encode(), headers={"content-type": "application/feed+json"}, url=FEED)
    expected = {
        known.fingerprint("a-1", "https://example.org/a/1", FEED, FEED),
        known.fingerprint("a-2", None, FEED, FEED),
    }
    assert [e.fingerprint is not None for e in parsed.entries] == [True, True, False]
    assert known.fingerprints(parsed) == b"".join(sorted(expected))
