"""The fast path's RSS 1.0 (RDF) reader answers exactly what feedparser answers, or declines.

The shared corpora (the real ORF feed, feedparser's own RDF tests) are compared in
``test_fastparse.py`` with the other formats. Here: generated RDF documents (hypothesis), with
the channel, items, image and text input blocks and elements without handlers in any order,
and what must decline.
"""

from __future__ import annotations

from collections.abc import Callable
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fastparse import _TEXT, HEADER_VARIANTS, NAMESPACES, _assert_same, _items
from test_fastparse_atom import _some

from feedwatch import fastparse
from feedwatch.parse import MAX_AUTHOR

_ROOT_NAMESPACES = {**NAMESPACES, "": "http://purl.org/rss/1.0/"}
del _ROOT_NAMESPACES["atom"]  # Atom's namespace on the root would make the version atom10
_LINKS = st.sampled_from(["https://site.example/a?x=1&amp;y=2", "http:///site.example/b", " /rel/c ", ""])


def _rdf(
    body: str, root: str = "", namespaces: dict[str, str] = _ROOT_NAMESPACES,
    decl: str = '<?xml version="1.0" encoding="utf-8"?>',
) -> bytes:  # fmt: skip
    xmlns = " ".join(f'xmlns{":" + p if p else ""}="{u}"' for p, u in namespaces.items())
    return f"{decl}<rdf:RDF {xmlns}{root}>{body}</rdf:RDF>".encode()


_CHANNEL = (
    "<channel rdf:about='https://site.example/'><title>Feed</title><link>https://site.example/</link>"
    "<description>D</description><items><rdf:Seq><rdf:li rdf:resource='https://site.example/1'/></rdf:Seq>"
    "</items></channel>"
)


@st.composite
def _channel(draw: st.DrawFn, text: st.SearchStrategy[str] = _TEXT) -> str:
    fields: dict[str, Callable[[], str]] = {
        "title": lambda: f"<title>{escape(draw(text))}</title>",
        "link": lambda: f"<link>{escape(draw(_LINKS))}</link>",
        "description": lambda: f"<description>{escape(draw(text))}</description>",
        "dc": lambda: (
            f"<dc:creator>{escape(draw(text))}</dc:creator><dc:publisher>P</dc:publisher>"
            "<dc:date>2026-11-30T10:00:00+01:00</dc:date><dc:rights>(c)</dc:rights>"
        ),
        "language": lambda: draw(
            st.sampled_from(["<dc:language>de</dc:language>", "<language>ru</language>"])
        ),
        "sy": lambda: "<sy:updatePeriod>hourly</sy:updatePeriod><sy:updateFrequency>2</sy:updateFrequency>",
        "items": lambda: (
            "<items><rdf:Seq><rdf:li rdf:resource='https://site.example/1'/>"
            "<rdf:li resource='https://site.example/2'/></rdf:Seq></items>"
        ),
        "image": lambda: "<image rdf:resource='https://site.example/i.png'/>",
        "textinput": lambda: "<textinput rdf:resource='https://site.example/search'/>",
        "orfon": lambda: f"<orfon:site>{escape(draw(text))}</orfon:site>",
    }
    about = draw(st.sampled_from(["", " rdf:about='https://site.example/'"]))
    return f"<channel{about}>{_some(draw, fields, 7)}</channel>"


@st.composite
def _beside(draw: st.DrawFn, text: st.SearchStrategy[str] = _TEXT) -> str:
    """What stands beside the channel: an item (with or without rdf:about), an image or text
    input block, an element without a handler."""
    # Atom's namespace is declared where it is used: on the root it would change the version.
    item = draw(_items(text)).replace("<atom:link ", f'<atom:link xmlns:atom="{NAMESPACES["atom"]}" ')
    about = draw(st.sampled_from(["", "https://site.example/about/1", " urn:x ", "/rel"]))
    if about:
        item = item.replace("<item>", f"<item rdf:about='{escape(about)}'>", 1)
    blocks = [
        item,
        f"<image rdf:about='https://site.example/i.png'><title>{escape(draw(text))}</title>"
        "<url>https://site.example/i.png</url><link>https://site.example/</link></image>",
        f"<textinput rdf:about='https://site.example/s'><title>{escape(draw(text))}</title>"
        "<description>Search</description><name>q</name><link>https://site.example/s</link></textinput>",
        "<orfon:extra><rdf:Bag><rdf:li rdf:resource='urn:y'/></rdf:Bag></orfon:extra>",
    ]
    return draw(st.sampled_from(blocks))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    channel=_channel(),
    beside=st.lists(_beside(), max_size=5),
    first=st.sampled_from(["", "<item><title>Before</title></item>", "<image><title>I</title></image>"]),
    headers=st.sampled_from(HEADER_VARIANTS),
)
def test_generated_rdf_feeds_match_feedparser(
    channel: str, beside: list[str], first: str, headers: dict[str, str]
) -> None:
    _assert_same(_rdf(first + channel + "".join(beside)), headers)


def test_every_field_the_rdf_reader_reads_is_compared_on_an_accepted_feed() -> None:
    """The generated feeds may be declined; this one (ORF's shape) must not be."""
    items = (
        "<item rdf:about='https://site.example/stories/1/'><title>Trump &amp; NAFTA – Ã©</title>"
        "<link>https://site.example/stories/1/</link><description>Österreich</description>"
        "<dc:subject>Ausland</dc:subject><dc:date>2017-01-23T14:17:05+01:00</dc:date>"
        "<orfon:usid>news:1</orfon:usid><orfon:storyType rdf:resource='urn:orfon:type:ticker'/>"
        "<orfon:substories><rdf:Bag>  </rdf:Bag></orfon:substories></item>"
        "<item rdf:about='urn:2'><title>Zwei</title><dc:creator>Desk</dc:creator>"
        "<content:encoded>&lt;p&gt;Voll&lt;/p&gt;</content:encoded></item>"
    )
    channel = (
        "<channel rdf:about='https://site.example/'><title>news</title><link>https://site.example/</link>"
        "<dc:language>de</dc:language><sy:updatePeriod>hourly</sy:updatePeriod>"
        "<sy:updateFrequency>2</sy:updateFrequency><dc:creator>ORF</dc:creator>"
        "<items><rdf:Seq><rdf:li rdf:resource='https://site.example/stories/1/'/></rdf:Seq></items></channel>"
    )
    image = "<image rdf:about='x'><title>Logo</title><url>https://site.example/l.png</url></image>"
    # Not text/xml without charset (HEADER_VARIANTS[2]): US-ASCII, and this feed's text is not.
    for headers in HEADER_VARIANTS[:2] + HEADER_VARIANTS[3:]:
        assert _assert_same(_rdf(channel + image + items), headers), headers


@pytest.mark.parametrize(
    "body",
    [
        # A title before the channel's hides it from feedparser (title_depth).
        _rdf("<item><title>I</title></item>" + _CHANNEL),
        _rdf("<image><title>I</title></image>" + _CHANNEL),
        _rdf("<item><title>I</title></item>"),  # no channel at all
        # Other versions: Atom's or RSS 0.90's namespace on the root, or no RSS 1.0 one.
        _rdf(_CHANNEL, namespaces={**_ROOT_NAMESPACES, "atom": "http://www.w3.org/2005/Atom"}),
        _rdf(_CHANNEL, namespaces={**_ROOT_NAMESPACES, "": "http://my.netscape.com/rdf/simple/0.9/"}),
        _rdf(_CHANNEL.replace("<", "<r1:").replace("<r1:/", "</r1:").replace("r1:rdf:", "rdf:")).replace(
            b'xmlns="http://purl.org/rss/1.0/"', b'xmlns:r1="http://example.org/other/"'
        ),
        # xml:lang and xml:base, attributes on the root, CDF attributes on items.
        _rdf(_CHANNEL, root=' xml:lang="de"'),
        _rdf(_CHANNEL + "<item xml:base='https://other.example/'><link>/a</link></item>"),
        _rdf(_CHANNEL, root=' version="1.0"'),
        _rdf(_CHANNEL + "<item rdf:about='x' href='https://site.example/cdf'><title>I</title></item>"),
        # An item with both rdf:about and a guid (feedparser: the guid wins).
        _rdf(_CHANNEL + "<item rdf:about='x'><guid>g</guid></item>"),
        # A text input block holding an element it does not know.
        _rdf(_CHANNEL + "<textinput><title>T</title><foo>x</foo></textinput>"),
    ],
)
def test_what_the_rdf_reader_does_not_understand_goes_to_feedparser(body: bytes) -> None:
    assert fastparse.read(body, {}, author_cap=MAX_AUTHOR) is None
