"""The fast path's Atom 1.0 reader answers exactly what feedparser answers, or declines.

The shared corpora (real feeds and feedparser's own test suite, Atom among them) are compared in
``test_fastparse.py``, which goes through :func:`feedwatch.fastparse.read` for both formats. Here:
generated Atom feeds (hypothesis), the skipped elements one by one, and what must decline.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from xml.sax.saxutils import escape, quoteattr

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fastparse import _DATES, _TEXT, HEADER_VARIANTS, _assert_same, _reference

from feedwatch import fastparse, fastparse_atom
from feedwatch.parse import MAX_AUTHOR, ParsedFeed

NAMESPACES = {
    "dc": "http://purl.org/dc/elements/1.1/",
    "media": "http://search.yahoo.com/mrss/",
    "slash": "http://purl.org/rss/1.0/modules/slash/",
    "wfw": "http://wellformedweb.org/CommentAPI/",
    "georss": "http://www.georss.org/georss",
    "thr": "http://purl.org/syndication/thread/1.0",
}


def _atom(
    entries: str, feed: str = "<title>Feed</title><id>urn:feed</id>", root: str = "",
    decl: str = '<?xml version="1.0" encoding="utf-8"?>',
) -> bytes:  # fmt: skip
    xmlns = " ".join(f'xmlns:{p}="{u}"' for p, u in NAMESPACES.items())
    return f'{decl}<feed xmlns="http://www.w3.org/2005/Atom" {xmlns}{root}>{feed}{entries}</feed>'.encode()


# --- generated feeds ----------------------------------------------------------------------------

_TYPES = st.sampled_from(["", ' type="text"', ' type="html"', ' type="HTML"', ' type="text/html"'])
_LANGS = st.sampled_from(["", ' xml:lang="ru"', ' xml:lang="hy_AM"', ' xml:lang=""'])
_IDS = st.sampled_from(["https://site.example/e/1", "tag:site.example,2026:1", "urn:uuid:1", " /rel/2 ", ""])
_RELS = st.sampled_from(
    ["", ' rel="alternate"', ' rel="ALTERNATE"', ' rel="related"', ' rel="self"', ' rel=""']
)
_LINK_TYPES = st.sampled_from(["", ' type="text/html"', ' type="html"', ' type="application/xhtml+xml"',
                               ' type="application/pdf"', ' type="text/html; charset=utf-8"'])  # fmt: skip
_HREFS = st.sampled_from(["https://site.example/a?x=1&amp;y=2", "http:///site.example/b", "/rel/c", ""])
_ATOM_DATES = st.one_of(
    _DATES,
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2030, 1, 1)).map(
        lambda d: (d.replace(tzinfo=UTC) + timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ),
)


def _some(draw: st.DrawFn, fields: dict[str, Callable[[], str]], most: int) -> str:
    """Up to ``most`` of the fields, each at most once, in any order."""
    chosen = draw(st.lists(st.sampled_from(sorted(fields)), max_size=most, unique=True))
    return "".join(fields[name]() for name in chosen)


@st.composite
def _person(draw: st.DrawFn, tag: str = "author", text: st.SearchStrategy[str] = _TEXT) -> str:
    parts = {
        "name": lambda: f"<name>{escape(draw(text))}</name>",
        "email": lambda: (
            f"<email>{escape(draw(st.sampled_from(['desk@site.example', '', ' a@b.c '])))}</email>"
        ),
        "uri": lambda: "<uri>https://site.example/desk</uri>",
    }
    return f"<{tag}>\n  {_some(draw, parts, 3)}\n</{tag}>"


@st.composite
def _wrapping_link(draw: st.DrawFn, text: st.SearchStrategy[str] = _TEXT) -> str:
    """A link holding what BBC's links hold (media thumbnails with images, a ``dc:title``), in
    some order and number, or a child the reader does not know."""
    image = '<img alt="a" src="https://site.example/t.jpg"/>'
    children = {
        "content": lambda: (
            f"<media:content>\n <media:thumbnail url='https://site.example/t.jpg'>{image}</media:thumbnail>"
            f"\n <media:thumbnail width='1'>{escape(draw(text))}</media:thumbnail></media:content>"
        ),
        "thumbnail": lambda: f"<media:thumbnail>{image}</media:thumbnail>",
        "dc:title": lambda: f"<dc:title>{escape(draw(text))}</dc:title>",
        "dc:title 2": lambda: f"<dc:title xml:lang='zh'>{escape(draw(text))}</dc:title>",
        "other": lambda: draw(st.sampled_from(["<media:title>M</media:title>", "<thr:total>1</thr:total>"])),
    }
    inside = _some(draw, children, 3)
    return (
        f"<link{draw(_RELS)}{draw(_LINK_TYPES)} href={quoteattr(draw(_HREFS))} title='story'>{inside}</link>"
    )


@st.composite
def _entries(draw: st.DrawFn, text: st.SearchStrategy[str] = _TEXT) -> str:
    fields: dict[str, Callable[[], str]] = {
        "id": lambda: f"<id>{escape(draw(_IDS) + draw(text))}</id>",
        "title": lambda: f"<title{draw(_TYPES)}{draw(_LANGS)}>{escape(draw(text))}</title>",
        "cdata title": lambda: f"<title type='html'><![CDATA[{draw(text).replace(']]>', '')}]]></title>",
        "link": lambda: (
            f"<link{draw(_RELS)}{draw(_LINK_TYPES)} href={quoteattr(draw(_HREFS) + draw(text))}/>"
        ),
        "link 2": lambda: f"<link{draw(_RELS)} href='https://site.example/second'/>",
        "wrapping link": lambda: draw(_wrapping_link(text)),
        "summary": lambda: f"<summary{draw(_TYPES)}{draw(_LANGS)}>{escape(draw(text))}</summary>",
        "content": lambda: f"<content{draw(_TYPES)}>{escape(draw(text))}</content>",
        "published": lambda: f"<published>{escape(draw(_ATOM_DATES))}</published>",
        "updated": lambda: f"<updated>{escape(draw(_ATOM_DATES))}</updated>",
        "author": lambda: draw(_person(text=text)),
        "contributor": lambda: draw(_person("contributor", text)),
        "category": lambda: f'<category term="t" scheme="s" label="l"{draw(_LANGS)}/>',
        "category 2": lambda: "<category term='u'>Text</category>",
        "rights": lambda: f"<rights>{escape(draw(text))}</rights>",
        "media": lambda: '<media:thumbnail url="https://site.example/t.jpg"/>',
        "dc:subject": lambda: f"<dc:subject>{escape(draw(text))}</dc:subject>",
        "unknown": lambda: f"<thr:total>{draw(st.integers(0, 9))}</thr:total>",
    }
    return f"<entry{draw(_LANGS)}>{_some(draw, fields, 9)}</entry>"


@st.composite
def _feed_head(draw: st.DrawFn, text: st.SearchStrategy[str] = _TEXT) -> str:
    fields: dict[str, Callable[[], str]] = {
        "title": lambda: f"<title{draw(_TYPES)}>{escape(draw(text))}</title>",
        "id": lambda: f"<id>{escape(draw(_IDS) + draw(text))}</id>",
        "link": lambda: (
            f"<link{draw(_RELS)}{draw(_LINK_TYPES)} href={quoteattr(draw(_HREFS) + draw(text))}/>"
        ),
        "self": lambda: '<link rel="self" href="https://feeds.example/atom"/>',
        "hub": lambda: '<link rel="hub" href="https://hub.example/"/>',
        "updated": lambda: f"<updated>{escape(draw(_ATOM_DATES))}</updated>",
        "subtitle": lambda: f"<subtitle{draw(_TYPES)}>{escape(draw(text))}</subtitle>",
        "author": lambda: draw(_person(text=text)),
        "generator": lambda: '<generator uri="https://gen.example/" version="1">Gen</generator>',
        "logo": lambda: "<logo>/logo.png</logo>",
        "rights": lambda: "<rights>(c)</rights>",
        "category": lambda: '<category term="t" xml:lang="zh-Hans"/><category term="u" label="l"/>',
    }
    return _some(draw, fields, 7)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    head=_feed_head(),
    entries=st.lists(_entries(), max_size=4),
    tail=_feed_head(),
    headers=st.sampled_from(HEADER_VARIANTS),
    root=_LANGS,
)
def test_generated_atom_feeds_match_feedparser(
    head: str, entries: list[str], tail: str, headers: dict[str, str], root: str
) -> None:
    _assert_same(_atom("".join(entries) + tail, head, root), headers)


# --- what is skipped is harmless, what is not understood declines --------------------------------


def _element(name: str) -> str:
    prefix, _, local = name.partition("_")
    tag = f"{prefix}:{local}" if local else name
    return f'<{tag} url="https://site.example/x" type="html">Text &amp; more</{tag}>'


@pytest.mark.parametrize("name", sorted(fastparse_atom._HARMLESS_IN_ENTRY))
def test_every_skipped_entry_element_leaves_feedparser_unchanged(name: str) -> None:
    base = (
        "<id>urn:e</id><title>T</title><link href='https://site.example/a'/><summary>S</summary>"
        "<author><name>N</name></author><published>2026-11-30T10:00:00Z</published>"
    )
    plain = _reference(_atom(f"<entry>{base}</entry>"), {})
    assert isinstance(plain, ParsedFeed)
    assert _reference(_atom(f"<entry>{base}{_element(name)}</entry>"), {}) == plain
    assert _reference(_atom(f"<entry>{_element(name)}{base}</entry>"), {}) == plain


@pytest.mark.parametrize("name", sorted(fastparse_atom._HARMLESS_IN_FEED))
def test_every_skipped_feed_element_leaves_feedparser_unchanged(name: str) -> None:
    entry = "<entry><id>urn:e</id><title>T</title><link href='https://site.example/a'/></entry>"
    feed = (
        "<title>Feed</title><id>urn:feed</id><link href='https://site.example/'/>"
        "<link rel='self' href='https://feeds.example/atom'/>"
    )
    plain = _reference(_atom(entry, feed), {})
    assert isinstance(plain, ParsedFeed)
    assert _reference(_atom(entry, feed + _element(name)), {}) == plain
    assert _reference(_atom(entry, _element(name) + feed), {}) == plain


@pytest.mark.parametrize(
    "body",
    [
        _atom('<entry><title type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">T</div></title></entry>'),
        _atom('<entry><summary type="xhtml">plain</summary></entry>'),
        _atom('<entry><content type="image/png">iVBORw0KGgo=</content></entry>'),
        _atom('<entry><content src="https://site.example/full"/></entry>'),
        _atom('<entry><summary mode="base64">SGk=</summary></entry>'),
        _atom("<entry><title>T <b>bold</b></title></entry>"),
        _atom("<entry><title>A</title><title>B</title></entry>"),
        _atom("<entry><summary>A</summary><summary>B</summary></entry>"),
        _atom('<entry xml:base="https://other.example/"><link href="/a"/></entry>'),
        _atom('<entry><link href="/a" xml:base="https://other.example/"/></entry>'),
        _atom('<entry><title lang="ru">T</title></entry>'),
        _atom("<entry><link>https://site.example/text-link</link></entry>"),
        # A link's children: a dc:title before the entry's title, or after an empty one, would
        # be the title or its language; other children, and any in the feed's own link, unread.
        _atom("<entry><link href='/a'><dc:title>D</dc:title></link><title>T</title></entry>"),
        _atom("<entry><title> </title><link href='/a'><dc:title>D</dc:title></link></entry>"),
        _atom("<entry><link href='/a'><dc:title>D</dc:title></link></entry>"),
        _atom("<entry><title>T</title><link href='/a'><dc:title><b>D</b></dc:title></link></entry>"),
        _atom("<entry><title>T</title><link href='/a'><media:title>M</media:title></link></entry>"),
        _atom(
            "<entry><title>T</title><link href='/a'><media:content><dc:title/></media:content></link></entry>"
        ),
        _atom(
            "<entry><title>T</title><link href='/a'><media:thumbnail><id/></media:thumbnail></link></entry>"
        ),
        _atom("<entry><title>T</title><link href='/a'><title>X</title></link></entry>"),
        _atom(
            "<entry><title>T</title><link href='/a'><media:content><media:thumbnail><id>urn:x</id>"
            "</media:thumbnail></media:content></link></entry>"
        ),
        _atom("<entry/>", feed="<title>F</title><link href='/'><media:thumbnail url='/t'/></link>"),
        _atom('<entry><link url="https://site.example/a"/></entry>'),
        _atom("<entry><source><title>Elsewhere</title></source></entry>"),
        _atom("<entry><author>desk@site.example (Desk)</author></entry>"),
        _atom("<entry><author><name>A</name><name>B</name></author></entry>"),
        _atom("<entry><author><name>A</name></author><author><name>B</name></author></entry>"),
        _atom("<entry><published>not a date</published></entry>"),
        _atom("<entry><media:title>Other title</media:title></entry>"),
        _atom("<entry><dc:creator>Desk</dc:creator></entry>"),
        _atom('<entry thr:count="1"><title>T</title></entry>'),
        _atom("<entry><title>T</title></entry>", root=' xmlns:rss="http://purl.org/rss/1.0/"'),
        _atom("<entry><title>T</title></entry>", root=' version="1.0"'),
        _atom("<entry><title>T</title></entry>", feed="<language>ru</language>"),
        _atom("<entry><title>T</title></entry>").replace(b"utf-8", b"bogus"),
        b'<?xml version="1.0"?><feed xmlns="http://purl.org/atom/ns#" version="0.3"><title>T</title></feed>',
    ],
)
def test_what_the_atom_reader_does_not_understand_goes_to_feedparser(body: bytes) -> None:
    assert fastparse.read(body, {}, author_cap=MAX_AUTHOR) is None


def test_every_field_the_atom_reader_reads_is_compared_on_an_accepted_feed() -> None:
    """The generated feeds may be declined; this one must not be, so every branch of the reader
    meets feedparser at least once."""
    entries = (
        '<entry xml:lang="ru"><id>https://site.example/e/1</id>'
        '<title type="html">Баку &amp;lt;b&amp;gt; Ã© \x85</title>'
        '<link rel="alternate" type="text/html" href="https://site.example/a?x=1&amp;y=2"/>'
        '<link rel="related" href="https://site.example/r"/><link href="https://site.example/last"/>'
        '<summary xml:lang="hy">Երևան</summary><content type="html">&lt;p&gt;Full&lt;/p&gt;</content>'
        "<published>2026-11-30T10:00:00+03:00</published><updated>2026-11-30T11:00:00Z</updated>"
        "<author><name> Desk </name><email>desk@site.example</email><uri>/desk</uri></author>"
        '<contributor><name>Other</name></contributor><category term="World"/><rights>(c)</rights></entry>'
        "<entry><id>tag:site.example,2026:2</id><content>Only content</content>"
        "<author><email>desk@site.example</email></author></entry>"
        "<entry><title>No link</title><id>urn:uuid:3</id><updated>2026-11-30</updated></entry>"
    )
    feed = (
        '<title type="text">Лента</title><subtitle>Sub</subtitle><id>urn:feed</id>'
        '<link rel="alternate" type="text/html" href="https://site.example/"/>'
        '<link rel="self" type="application/atom+xml" href="https://feeds.example/atom"/>'
        '<link rel="hub" href="https://hub.example/"/><updated>2026-11-30T11:00:00Z</updated>'
        "<author><name>Site</name></author><generator>Gen</generator><logo>/l.png</logo>"
    )
    for headers in HEADER_VARIANTS[:2] + HEADER_VARIANTS[3:]:
        assert _assert_same(_atom(entries, feed, ' xml:lang="en"'), headers), headers
        assert _assert_same(_atom(entries, feed), headers), headers


def test_a_link_wrapping_media_and_a_title_is_read_as_feedparser_reads_it() -> None:
    """BBC's entries (the shared corpus's bbc-chinese): the title, then a link holding thumbnails
    with images and a dc:title that feedparser drops. The fast path must take it."""
    link = (
        '<link rel="alternate" type="text/html" href="https://site.example/story" title="story">'
        '<media:content><media:thumbnail url="https://img.example/1.jpg" width="106" height="60">'
        '<img alt="Картинка" width="106" height="60" src="https://img.example/1.jpg"/></media:thumbnail>'
        '<media:thumbnail url="https://img.example/2.jpg"><img src="https://img.example/2.jpg"/>'
        "</media:thumbnail></media:content><dc:title>Другой заголовок</dc:title></link>"
    )
    entries = (
        f'<entry><id>tag:site.example,2015:1</id><title xml:lang="ru">Заголовок</title>'
        f'<summary xml:lang="ru">Текст</summary>{link}<published>2015-03-16T07:32:23Z</published></entry>'
        f"<entry><id>tag:site.example,2015:2</id><title>Second</title>{link}{link}</entry>"
    )
    assert _assert_same(_atom(entries), {})
