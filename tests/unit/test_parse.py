"""parse_feed on the fixture feeds in tests/fixtures/feeds/ (see each file for the case)."""

from __future__ import annotations

import calendar
import time
from dataclasses import fields, replace
from datetime import UTC, datetime
from pathlib import Path

import feedparser.encodings
import pytest

from feedwatch.parse import (
    FEEDPARSER_PI_ENCODING,
    MAX_ENTRIES,
    ParsedEntry,
    ParsedFeed,
    ParseError,
    _struct_time,
    parse_feed,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "feeds"
URL = "https://feed.example.net/rss"


def parse(name: str, headers: dict[str, str] | None = None) -> ParsedFeed:
    return parse_feed((FIXTURES / name).read_bytes(), headers=headers or {}, url=URL)


@pytest.mark.parametrize(
    ("name", "fmt", "title", "entries", "bozo"),
    [
        ("rss20.xml", "rss20", "Example News", 2, False),
        ("atom.xml", "atom10", "Atom &amp; Co", 2, False),
        ("rss10.xml", "rss10", "RDF Example", 1, False),
        ("jsonfeed.json", "json", "JSON Example", 3, False),
        ("cyrillic_cp1251.xml", "rss20", "Новости Оренбурга", 1, False),
        ("cyrillic_utf8.xml", "rss20", "Новости Оренбурга", 1, False),
        ("cyrillic_utf8_bom.xml", "rss20", "Новости Оренбурга", 1, False),
        ("latin1_declared.xml", "rss20", "Notícias do Brasil", 1, False),
        ("latin1_undeclared.xml", "rss20", "Notícias do Brasil", 1, True),
        ("empty_channel.xml", "rss20", "Nothing yet", 0, False),
        ("missing_guids_relative.xml", "rss20", "Relative", 4, False),
        ("bad_dates.xml", "rss20", "Dates", 5, False),
    ],
)
def test_formats_and_encodings(name: str, fmt: str, title: str, entries: int, bozo: bool) -> None:
    feed = parse(name)
    assert (feed.format, feed.title, len(feed.entries), feed.bozo) == (fmt, title, entries, bozo)
    assert (feed.bozo_message is not None) == bozo


@pytest.mark.parametrize(
    ("name", "error_class"),
    [
        ("empty.xml", "not_a_feed"),
        ("html_page.html", "not_a_feed"),
        ("not_feed.xml", "not_a_feed"),
        ("other.json", "not_a_feed"),
        ("broken.xml", "parse_error"),
        ("bad.json", "parse_error"),
    ],
)
def test_classified_failures(name: str, error_class: str) -> None:
    with pytest.raises(ParseError) as info:
        parse(name)
    assert info.value.error_class == error_class
    assert info.value.message


@pytest.mark.parametrize("body", [b"", b"   \n\t ", b"\xef\xbb\xbf"])
def test_blank_bodies_are_not_feeds(body: bytes) -> None:
    with pytest.raises(ParseError, match="not_a_feed"):
        parse_feed(body, headers={}, url=URL)


def test_rss20_channel_metadata_and_entry_fields() -> None:
    feed = parse("rss20.xml")
    assert (feed.link, feed.language, feed.ttl_minutes) == ("https://news.example.com/", "en-us", 15)
    assert (feed.update_period, feed.update_frequency) == ("hourly", 4)
    assert feed.hub_url == "https://pubsubhubbub.appspot.com/"
    assert feed.self_url == "https://news.example.com/rss.xml"
    first, second = feed.entries
    assert first.guid == "https://news.example.com/world/peace-treaty"
    assert first.title == "Peace treaty <b>initialled</b> in Washington"
    assert first.author == "Jane Doe"
    assert first.published == datetime(2025, 8, 8, 15, 30, tzinfo=UTC)
    assert second.guid == "item-2"
    assert "<script>" in second.content_html  # raw; normalize turns it into text
    assert second.author is not None and "Ed Itor" in second.author


def test_atom_language_base_and_links() -> None:
    feed = parse("atom.xml")
    ru, en = feed.entries
    assert (feed.language, ru.language, en.language) == ("ru", "ru", "en")
    assert ru.base == "https://atom.example.org/blog/"
    assert ru.link is not None and ru.link.endswith("posts/1?ref=rss")
    assert ru.published is None and ru.updated == datetime(2025, 8, 10, 6, 0, tzinfo=UTC)
    assert feed.hub_url == "https://hub.example.org/"


def test_json_feed_entries() -> None:
    feed = parse("jsonfeed.json")
    first, second, orphan = feed.entries
    assert (feed.language, feed.hub_url) == ("hy", "https://hub.json.example.com/")
    assert (first.guid, first.author, first.language) == ("1", "Anna", "hy")
    assert first.published == datetime(2025, 8, 8, 6, 0, tzinfo=UTC)
    assert (second.guid, second.language) == ("2", "en")
    assert second.content_html == "5 &lt; 6 &amp; 7 &gt; 3"  # content_text, escaped as HTML
    assert (orphan.guid, orphan.link) == (None, None)


def test_json_content_type_with_xml_body_is_parsed_as_xml() -> None:
    feed = parse("rss20.xml", headers={"Content-Type": "application/json"})
    assert feed.format == "rss20"


def test_cp1251_declared_in_headers_only() -> None:
    body = (FIXTURES / "cyrillic_cp1251.xml").read_bytes().replace(b"windows-1251", b"foo", 1)
    with_header = parse_feed(body, headers={"Content-Type": "text/xml; charset=windows-1251"}, url=URL)
    assert with_header.entries[0].title == "Азербайджан и Россия подписали соглашение"


def test_xxe_external_entity_is_not_expanded() -> None:
    feed = parse("xxe.xml")
    everything = repr(feed)
    assert "root:" not in everything
    assert feed.entries[0].link == "https://xxe.example.com/1"


def test_billion_laughs_is_not_expanded() -> None:
    feed = parse("billion_laughs.xml")
    assert len(repr(feed)) < 5_000
    assert "lollollol" not in repr(feed)


@pytest.mark.timeout(10)
def test_redos_author_parses_fast() -> None:
    # Without the guard feedparser's e-mail regex takes about a minute on this author field.
    feed = parse("redos_author.xml")
    author = feed.entries[0].author
    assert author is not None and len(author) <= 500


@pytest.mark.timeout(20)
@pytest.mark.parametrize("fast", [False, True])
def test_a_first_line_full_of_encoding_attributes_does_not_hold_the_parser(fast: bool) -> None:
    """feedparser's declaration pattern backtracks cubically on this line (52 KB: over six
    minutes); parse.py puts a linear stand-in in its place, so feedparser (``fast=False``, and the
    fallback for what the fast path declines) reads it like any other document."""
    assert feedparser.encodings.RE_XML_PI_ENCODING is not FEEDPARSER_PI_ENCODING
    assert FEEDPARSER_PI_ENCODING.pattern.startswith(b"^<\\?")  # the oracle is the real pattern
    hostile = "encoding='x " * 5_000
    body = f'<?xml version="1.0" {hostile}?><rss version="2.0"><channel><title>T</title>'
    body += "<item><title>one</title><guid>g1</guid></item></channel></rss>"
    feed = parse_feed(body.encode(), headers={"content-type": "application/rss+xml"}, url=URL, fast=fast)
    # Read as feedparser reads it: the declaration's encoding ("x ...") is unknown, so bozo.
    assert (feed.format, feed.bozo, feed.title) == ("rss20", True, "T")
    assert [e.guid for e in feed.entries] == ["g1"]


def test_entries_are_capped() -> None:
    items = "".join(f"<item><title>t{i}</title><guid>g{i}</guid></item>" for i in range(1_050))
    body = f'<rss version="2.0"><channel><title>Many</title>{items}</channel></rss>'.encode()
    feed = parse_feed(body, headers={}, url=URL)
    assert len(feed.entries) == MAX_ENTRIES
    assert feed.entries[0].title == "t0"


def test_overlong_title_is_capped() -> None:
    body = f'<rss version="2.0"><channel><title>{"x" * 50_000}</title></channel></rss>'.encode()
    assert len(parse_feed(body, headers={}, url=URL).title) <= 10_000


def test_bozo_feed_with_entries_is_kept() -> None:
    body = b'<rss version="2.0"><channel><title>Broken &nbsp; tail</title><item><title>x</title>'
    feed = parse_feed(body, headers={}, url=URL)
    assert feed.bozo and feed.bozo_message and len(feed.entries) == 1


def test_guid_that_looks_relative_is_not_turned_into_a_url() -> None:
    body = b'<rss version="2.0"><channel><title>T</title><item><guid>12345</guid></item></channel></rss>'
    feed = parse_feed(body, headers={"Content-Location": "https://x.example/"}, url=URL)
    assert feed.entries[0].guid == "12345"


@pytest.mark.parametrize(
    "body",
    [
        b'{"items": ' + b"[" * 200_000,
        b'{"items": [{"id": 1' + b"0" * 10_000 + b"}]}",
        b'{"version": "https://jsonfeed.org/version/1", "items": [{"id": true, "title": 5}]}',
    ],
)
def test_hostile_json_is_classified_or_tolerated(body: bytes) -> None:
    try:
        feed = parse_feed(body, headers={}, url=URL)
    except ParseError as exc:
        assert exc.error_class == "parse_error"
    else:
        assert feed.format == "json"


@pytest.mark.parametrize(
    "fields",
    [
        (2026, 11, 30, 10, 0, 0),
        (2016, 12, 31, 23, 59, 60),  # a leap second
        (2026, 2, 29, 12, 0, 0),  # no such day
        (2026, 3, 0, 0, 0, 0),
        (2026, 1, 1, 24, 0, 0),
        (1, 1, 1, 0, 0, 0),
        (9999, 12, 31, 23, 59, 59),
        (10000, 1, 1, 0, 0, 0),
        (0, 1, 1, 0, 0, 0),
        (10**20, 1, 1, 0, 0, 0),
        (2026, 11, 30, 10, 0, 1.5),
    ],
)
def test_parsed_dates_become_the_moment_timegm_gives(fields: tuple[float, ...]) -> None:
    value = time.struct_time((*fields, 0, 1, 0))
    try:
        expected: datetime | None = datetime.fromtimestamp(calendar.timegm(value), UTC)
    except (OverflowError, ValueError, OSError):
        expected = None
    assert _struct_time(value) == expected


@pytest.mark.parametrize(
    "body",
    [
        # Found by test_parse_fuzz: an xml:base that urllib cannot parse (an unclosed IPv6
        # bracket) raised ValueError out of parse_feed instead of being ignored.
        b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://[atom.example.org/b/">'
        b"<title>t</title><entry><id>tag:x,2025:1</id><title>One</title>"
        b'<link href="posts/1"/><updated>2025-08-10T10:00:00Z</updated></entry></feed>',
        b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
        b'<entry xml:base="http://[::1/x/"><id>tag:x,2025:1</id><title>One</title>'
        b'<link href="posts/1"/><updated>2025-08-10T10:00:00Z</updated></entry></feed>',
        b'<rss version="2.0"><channel><title>t</title><link>http://[bad/</link>'
        b"<item><guid>g1</guid><title>One</title><link>posts/1</link></item></channel></rss>",
    ],
)
def test_an_unparsable_base_is_ignored(body: bytes) -> None:
    feed = parse_feed(body, headers={}, url=URL)
    (entry,) = feed.entries
    assert entry.title == "One"
    assert entry.base == URL  # the malformed base is skipped: links resolve against the feed URL


def test_an_entry_without_its_texts_keeps_every_other_field() -> None:
    """``ParsedEntry.without_texts`` builds the entry field by field: a field added to the class
    and not to the method would be lost there. Every field gets a distinct value here."""
    values: dict[str, object] = {}
    for n, f in enumerate(fields(ParsedEntry)):
        if f.type in ("datetime | None",):
            values[f.name] = datetime(2026, 1, 1 + n, tzinfo=UTC)
        elif f.type == "bool":
            values[f.name] = True
        elif f.type == "bytes | None":
            values[f.name] = bytes([n]) * 8
        else:
            values[f.name] = f"{f.name}-{n}"
    entry = ParsedEntry(**values)  # type: ignore[arg-type]
    assert entry.without_texts() == replace(entry, title="", summary_html="", content_html="")
    assert len({repr(v) for v in values.values()}) == len(values)
