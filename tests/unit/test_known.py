"""Entries a feed has stored, remembered per process, and what the parse skips for them."""

from __future__ import annotations

import dataclasses
import re

from support.feeds import item, rss

from feedwatch.known import KnownEntries
from feedwatch.normalize import identity_key_of
from feedwatch.parse import parse_feed

FEED = "https://feeds.example/rss"


def _body(seqs: range) -> bytes:
    items = [item(f"https://example.org/a/{s}", f"Title {s}", f"<p>Text {s}</p>", f"https://example.org/a/{s}")
             for s in seqs]  # fmt: skip
    # One fixed date: bodies built at different moments must still compare equal.
    date = b"<pubDate>Mon, 30 Nov 2026 10:00:00 GMT</pubDate>"
    return re.sub(rb"<pubDate>[^<]*</pubDate>", date, rss(items))


def _keys(seqs: range) -> list[str]:
    parsed = parse_feed(_body(seqs), headers={}, url=FEED)
    return [identity_key_of(e.guid, e.link, e.base, feed_url=FEED) or "" for e in parsed.entries]


def test_nothing_remembered_means_no_predicate() -> None:
    known = KnownEntries()
    assert known.predicate(1, FEED) is None
    known.remember(1, [])
    assert known.predicate(1, FEED) is None


def test_remembered_keys_mark_entries_known_and_their_texts_are_skipped() -> None:
    known = KnownEntries()
    known.remember(1, _keys(range(0, 5)))
    full = parse_feed(_body(range(0, 7)), headers={}, url=FEED)
    marked = parse_feed(_body(range(0, 7)), headers={}, url=FEED, known=known.predicate(1, FEED))
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
    # Another feed's memo says nothing about this one.
    assert known.predicate(2, FEED) is None


def test_the_feedparser_path_marks_known_entries_and_keeps_their_texts() -> None:
    known = KnownEntries()
    known.remember(1, _keys(range(0, 2)))
    body = _body(range(0, 3)).replace(b'<rss version="2.0">', b'<rss version="0.91">')
    marked = parse_feed(body, headers={}, url=FEED, known=known.predicate(1, FEED))
    assert [e.known for e in marked.entries] == [True, True, False]
    full = parse_feed(body, headers={}, url=FEED)
    assert [dataclasses.replace(e, known=False) for e in marked.entries] == list(full.entries)


def test_remember_replaces_and_the_least_recently_polled_feed_is_forgotten() -> None:
    known = KnownEntries(max_feeds=2)
    known.remember(1, _keys(range(0, 3)))
    known.remember(1, _keys(range(3, 4)))  # the latest poll's keys replace the last
    marked = parse_feed(_body(range(0, 4)), headers={}, url=FEED, known=known.predicate(1, FEED))
    assert [e.known for e in marked.entries] == [False, False, False, True]
    known.remember(2, _keys(range(0, 1)))
    known.remember(3, _keys(range(0, 1)))
    assert known.predicate(1, FEED) is None and known.predicate(3, FEED) is not None
