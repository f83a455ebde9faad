"""The fast path reads documents in other encodings than UTF-8 exactly as feedparser does, or
declines.

Three layers: :func:`utf8_document` against feedparser's own ``convert_to_utf8`` (accepted only
where feedparser raises no flag, and the same document to the parser); whole feeds in legacy
encodings, generated with non-ASCII text in every field, through ``parse_feed`` both ways; and
the shared corpora under the headers their files name (feedparser's test suite carries them in
``Header:`` comments) and under charsets that agree with their declarations.
"""

from __future__ import annotations

import codecs
import re
from xml.sax.saxutils import escape

import pytest
from feedparser.encodings import convert_to_utf8
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lxml import etree
from test_fastparse import _assert_same, _corpus_files, _items, _reference, _rss
from test_fastparse_atom import _atom, _entries, _feed_head
from test_fastparse_rdf import _beside, _channel, _rdf

from feedwatch import fastparse
from feedwatch.fastparse_encoding import pi_encoding, utf8_document
from feedwatch.parse import FEEDPARSER_PI_ENCODING, MAX_AUTHOR, ParsedFeed

# Codec → characters it can write (the rest of the pool becomes character references). Single-
# byte Latin and Cyrillic, multi-byte CJK; UTF-8 as the control.
_POOL = "éüßñçÃ©Ã¼€šŽ‰“”–…ĄŁŚŹŻąłśźżŐőБакуЁжЩъ№ёЇїҐ新闻中文ニュース한국어\x85\x93\xa0<>&;'\"\t\n /?=#:."
CODECS = [
    "iso-8859-1", "windows-1252", "windows-1251", "koi8-r", "iso-8859-5", "iso-8859-2",
    "windows-1250", "iso-8859-15", "cp866", "mac-cyrillic", "shift_jis", "euc-jp", "gb2312",
    "gbk", "big5", "euc-kr", "utf-8",
]  # fmt: skip
# How feeds spell some of them in declarations and charsets.
_SPELLINGS = {
    "iso-8859-1": ["ISO-8859-1", "latin1", "l1"],
    "windows-1252": ["Windows-1252", "cp1252"],
    "windows-1251": ["WINDOWS-1251", "cp1251"],
    "koi8-r": ["KOI8-R", "koi8_r"],
    "shift_jis": ["Shift_JIS", "sjis"],
    "gb2312": ["GB2312"],
    "big5": ["Big5"],
    "euc-kr": ["EUC-KR"],
}


def _alphabet(codec: str) -> list[str]:
    writable = [c for c in _POOL if _encodable(c, codec)]
    return [*writable, "Ж", "€", "新"]  # some of these need references in most codecs


def _encodable(char: str, codec: str) -> bool:
    try:
        char.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def _text(codec: str) -> st.SearchStrategy[str]:
    """Non-empty text, mostly characters the codec writes as they are."""
    return st.lists(st.sampled_from(_alphabet(codec)), min_size=1, max_size=10).map("".join)


def _encode(document: str, codec: str) -> bytes:
    return document.encode(codec, errors="xmlcharrefreplace")


def _declaration(label: str | None, quote: str = '"') -> str:
    if label is None:
        return ""
    return f"<?xml version={quote}1.0{quote} encoding={quote}{label}{quote}?>"


# --- utf8_document against feedparser's own encoding detection -------------------------------

_LABELS = st.sampled_from(
    [None, "utf-8", "UTF-8", "iso-8859-1", "windows-1252", "windows-1251", "KOI8-R", "gb2312",
     "shift_jis", "utf-16", "bogus", "rot13", "ascii"]
)  # fmt: skip
_CONTENT_TYPES = st.sampled_from(
    [None, "", "application/rss+xml", "application/xml", "application/xml-dtd", "Application/RSS+XML",
     "application/xml-foo", "image/svg+xml", "text/xml", "text/rss+xml", "text/html", "text/plain",
     "application/atom+xml; charset=windows-1251", 'application/xml; charset="KOI8-R"',
     "application/rss+xml;charset=utf-8", "text/xml; charset=iso-8859-1", "text/xml;charset = us-ascii",
     "application/xml; charset=gb2312", "application/xml; charset=bogus"]
)  # fmt: skip


def _parsed(document: bytes) -> str | None:
    """The document as the fast path's parser reads it, canonical; ``None`` if it cannot."""
    try:
        root = etree.fromstring(document, fastparse._parser())
    except (etree.LxmlError, ValueError):
        return None
    return str(etree.tostring(root, method="c14n2").decode())


@settings(max_examples=600, deadline=None)
@given(
    bom=st.booleans(),
    label=_LABELS,
    quote=st.sampled_from(['"', "'"]),
    codec=st.sampled_from(CODECS),
    text=st.text(st.sampled_from(_POOL), max_size=8),
    junk=st.binary(max_size=2),
    content_type=_CONTENT_TYPES,
    language=st.booleans(),
)
def test_utf8_document_is_what_feedparser_hands_expat(
    bom: bool, label: str | None, quote: str, codec: str, text: str, junk: bytes,
    content_type: str | None, language: bool,
) -> None:  # fmt: skip
    """Accepted (and well-formed) only where feedparser raises no encoding flag, and then the
    same document."""
    body = (
        (codecs.BOM_UTF8 if bom else b"")
        + _declaration(label, quote).encode()
        + b"<rss><title>"
        + _encode(escape(text), codec)
        + junk.replace(b"<", b"").replace(b"&", b"")
        + b"</title></rss>"
    )
    headers = {} if content_type is None else {"content-type": content_type}
    if language:
        headers["content-language"] = "ru"
    mine = utf8_document(body, headers)
    result: dict[str, object] = {}
    theirs = convert_to_utf8(dict(headers), body, result)
    # A UTF-8 document is passed on unchecked: lxml rejects what Python's codec rejects.
    if mine is not None and _parsed(mine) is not None:
        assert not result.get("bozo"), result.get("bozo_exception")
        assert _parsed(mine) == _parsed(theirs)


_CHANNEL = "<rss version='2.0'><channel><title>T</title><item><title>{}</title></item></channel></rss>"
_PLAIN = _CHANNEL.format("").encode()
_CP1252 = b'<?xml version="1.0" encoding="windows-1252"?>'


# Whole attributes and their pieces: the pattern's answer turns on which encoding= is the last
# with a quote after it before the last ?>.
_PI_TOKENS = [b"encoding='", b'encoding="', b"encoding=", b"'", b'"', b"?>", b"<?", b"x", b"\n", b"?", b">"]


@settings(max_examples=3000, deadline=None)
@given(start=st.booleans(), tokens=st.lists(st.sampled_from(_PI_TOKENS), max_size=14))
@example(start=True, tokens=[b"xml encoding='", b"a", b"' ", b"encoding='", b"b", b"'?>"])
@example(start=True, tokens=[b"xml encoding='", b"a", b"'?>", b"encoding='", b"b", b"'"])
@example(start=True, tokens=[b"xml encoding='a'?>", b"\n", b"encoding='b'?>"])
def test_pi_encoding_captures_what_feedparsers_pattern_captures(start: bool, tokens: list[bytes]) -> None:
    data = (b"<?" if start else b"") + b"".join(tokens)
    match = FEEDPARSER_PI_ENCODING.match(data)  # the pattern itself, not parse.py's stand-in
    assert pi_encoding(data) == (match.group(1) if match else None)


@pytest.mark.timeout(10)
def test_a_first_line_full_of_encoding_attributes_takes_linear_time() -> None:
    """feedparser's own pattern needs ~10 s for 1,000 of these (cubic): the fast path must not."""
    title = "encoding='x' " * 50_000
    body = _rss(f"<item><title>{title}</title></item>", decl='<?xml version="1.0" encoding="utf-8"?>')
    assert b"\n" not in body
    assert fastparse.read(body, {}, author_cap=MAX_AUTHOR) is not None


@pytest.mark.parametrize(
    ("body", "headers", "flagged"),
    [
        # No declaration, no charset: UTF-8, and these bytes are not.
        (_CHANNEL.format("é").encode("latin-1"), {}, True),
        # A BOM says UTF-8, the declaration says otherwise: feedparser's choice hangs on the rest.
        (codecs.BOM_UTF8 + b'<?xml version="1.0" encoding="windows-1251"?>' + _PLAIN, {}, False),
        # text/* without charset is US-ASCII (RFC 3023), whatever the declaration says.
        (('<?xml version="1.0" encoding="windows-1251"?>' + _CHANNEL.format("Ж")).encode("cp1251"),
         {"content-type": "text/xml"}, True),
        # Not an XML media type, or no Content-Type in a response: flagged.
        (_PLAIN, {"content-type": "text/html"}, True),
        (_PLAIN, {"content-type": "Application/RSS+XML"}, True),
        (_PLAIN, {"content-type": ""}, True),
        (_PLAIN, {"content-language": "ru"}, True),
        # Unknown and non-text codecs; a byte cp1252 leaves undefined.
        (b'<?xml version="1.0" encoding="bogus"?>' + _PLAIN, {}, True),
        (b'<?xml version="1.0" encoding="rot13"?>' + _PLAIN, {}, True),
        (_CP1252 + _CHANNEL.format("\x81").encode("latin-1"), {}, True),
        # UTF-16 and UTF-32 are declined, marked or not.
        (("<?xml version='1.0' encoding='utf-16'?>" + _CHANNEL.format("Ж")).encode("utf-16"), {}, False),
        (("<?xml version='1.0' encoding='utf-16'?>" + _CHANNEL.format("Ж")).encode("utf-16-le"), {}, False),
        (("<?xml version='1.0' encoding='utf-32'?>" + _CHANNEL.format("Ж")).encode("utf-32"), {}, False),
    ],
)  # fmt: skip
def test_what_feedparser_flags_or_reads_otherwise_is_declined(
    body: bytes, headers: dict[str, str], flagged: bool
) -> None:
    assert fastparse.read(body, headers, author_cap=MAX_AUTHOR) is None
    if flagged:
        reference = _reference(body, headers)
        assert not isinstance(reference, ParsedFeed) or reference.bozo


def test_the_precedence_of_charset_declaration_and_default() -> None:
    body = '<?xml version="1.0" encoding="koi8-r"?><rss>Баку</rss>'.encode("koi8-r")
    cyrillic = "<rss>Баку</rss>"
    assert _parsed(utf8_document(body, {}) or b"") == cyrillic  # the declaration
    assert _parsed(utf8_document(body, {"content-type": "application/rss+xml"}) or b"") == cyrillic
    # The charset wins over the declaration: the same bytes, read as Latin-1.
    latin = utf8_document(body, {"content-type": "application/rss+xml; charset=iso-8859-1"})
    assert _parsed(latin or b"") == f"<rss>{'Баку'.encode('koi8-r').decode('latin-1')}</rss>"


# --- whole feeds, non-ASCII in every field ------------------------------------------------------


def _headers(draw: st.DrawFn, charset: str) -> dict[str, str]:
    return draw(
        st.sampled_from(
            [{}, {"content-type": "application/rss+xml"},
             {"content-type": f"application/xml; charset={charset}"},
             {"content-type": f'text/xml; charset="{charset}"', "content-language": "ru_RU"},
             {"content-type": "text/xml"}, {"content-type": "application/atom+xml; charset=utf-8"}]
        )
    )  # fmt: skip


@st.composite
def _encoded_feed(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """An RSS 2.0, Atom or RSS 1.0 feed written in one codec, declared as it (under one of its names) or as
    another (mislabelled: feedparser decodes it wrongly and repairs UTF-8 read as Latin-1)."""
    codec = draw(st.sampled_from(CODECS))
    text = _text(codec)
    names = [codec, *_SPELLINGS.get(codec, [])]
    label = draw(st.one_of(st.sampled_from(names), st.none(), st.sampled_from(CODECS)))
    charset = draw(st.one_of(st.sampled_from(names), st.sampled_from(CODECS)))
    kind = draw(st.sampled_from(["rss", "atom", "rdf"]))
    if kind == "rss":
        channel = f"<title>{escape(draw(text))}</title><link>https://site.example/{escape(draw(text))}</link>"
        channel += f"<description>{escape(draw(text))}</description>"
        document = _rss("".join(draw(st.lists(_items(text), max_size=3))), channel, _declaration(label))
    elif kind == "rdf":
        body = draw(_channel(text)) + "".join(draw(st.lists(_beside(text), max_size=3)))
        document = _rdf(body, decl=_declaration(label))
    else:
        head = draw(_feed_head(text))
        entries = "".join(draw(st.lists(_entries(text), max_size=3)))
        document = _atom(entries, head, decl=_declaration(label))
    return _encode(document.decode(), codec), _headers(draw, charset)


@settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feed=_encoded_feed())
def test_generated_feeds_in_legacy_encodings_match_feedparser(feed: tuple[bytes, dict[str, str]]) -> None:
    _assert_same(*feed)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("where", ["declaration", "charset", "both"])
def test_a_feed_with_every_field_in_the_codec_is_read_as_feedparser_reads_it(codec: str, where: str) -> None:
    """The generated feeds may be declined; these must not be, in every codec."""
    text = "".join(c for c in _alphabet(codec) if c not in "\t\n<>&'\"")[:12]
    item = (
        f"<item><title>{text} 1</title><link>https://site.example/{text}</link>"
        f"<description>{text} &lt;p&gt;</description><guid>https://site.example/g/{text}</guid>"
        f"<pubDate>Mon, 30 Nov 2026 10:00:00 +0300</pubDate><author>{text}</author>"
        f"<content:encoded><![CDATA[<p>{text}</p>]]></content:encoded><category>{text}</category></item>"
        f"<item><guid isPermaLink='false'>{text}</guid><dc:creator>{text}</dc:creator>"
        f"<media:description>{text}</media:description><dc:date>2026-11-30</dc:date></item>"
    )
    channel = (
        f"<title>{text}</title><link>https://site.example/{text}</link><description>{text}</description>"
        "<language>ru</language><ttl>15</ttl>"
    )
    declaration = _declaration(codec if where != "charset" else None)
    body = _encode(_rss(item, channel, declaration).decode(), codec)
    headers = {"content-type": f"application/rss+xml; charset={codec}"} if where != "declaration" else {}
    assert _assert_same(body, headers)
    atom = _atom(
        f'<entry><id>urn:{text}</id><title type="html">{text}</title><link href="https://site.example/{text}"/>'
        f"<summary>{text}</summary><content>{text}</content><author><name>{text}</name></author>"
        "<updated>2026-11-30T10:00:00Z</updated></entry>",
        f"<title>{text}</title><id>urn:feed:{text}</id><link href='https://site.example/{text}'/>",
        decl=declaration,
    )
    assert _assert_same(_encode(atom.decode(), codec), headers)


def test_gb2312_is_read_as_gb18030_as_feedparser_reads_it() -> None:
    """喆 and 镕 are GBK's, not GB2312's: declared GB2312, only a gb18030 reading succeeds."""
    for headers in ({}, {"content-type": "application/rss+xml; charset=GB2312"}):
        body = _rss("<item><title>喆 镕 新闻</title></item>", decl='<?xml version="1.0" encoding="GB2312"?>')
        assert _assert_same(body.decode().encode("gb18030"), headers)


def test_a_mislabelled_feed_is_repaired_as_feedparser_repairs_it() -> None:
    """UTF-8 declared as Latin-1: feedparser decodes Latin-1 and then undoes it per value."""
    body = _rss(
        "<item><title>Ångström – café</title></item>", decl='<?xml version="1.0" encoding="iso-8859-1"?>'
    )
    assert _assert_same(body, {})
    parsed = _reference(body, {})
    assert isinstance(parsed, ParsedFeed)
    assert parsed.entries[0].title == "Ångström – café"


# --- the shared corpora -------------------------------------------------------------------------

_HEADER_LINE = re.compile(rb"^Header:\s+([^:\r\n]+):\s*(.*?)\s*$", re.MULTILINE)


def _named_headers(body: bytes) -> dict[str, str]:
    """The response headers a feedparser test document names in its ``Header:`` comments."""
    return {k.decode().strip().lower(): v.decode("latin-1") for k, v in _HEADER_LINE.findall(body)}


@pytest.mark.corpus
@pytest.mark.timeout(300)
def test_feedparser_test_suite_under_its_own_headers_matches_feedparser() -> None:
    files = _corpus_files("feedparser-tests")
    accepted = [p for p in files if _assert_same(p.read_bytes(), _named_headers(p.read_bytes()), str(p))]
    encoding = [p.name for p in accepted if p.parent.name == "encoding"]
    print(f"\nfast path took {len(accepted)} of {len(files)} under their own headers; encoding/: {encoding}")
    assert len(encoding) >= 10


@pytest.mark.corpus
@pytest.mark.timeout(300)
def test_real_feeds_under_their_declared_charset_match_feedparser() -> None:
    accepted = set()
    for path in _corpus_files("feeds"):
        body = path.read_bytes()
        declared = re.match(rb"(?:\xef\xbb\xbf)?<\?xml[^>]*encoding=[\"']([^\"']+)", body)
        charset = declared.group(1).decode() if declared else "utf-8"
        for headers in (
            {"content-type": f"application/rss+xml; charset={charset}"},
            {"content-type": f"text/xml; charset={charset.upper()}", "content-language": "pt_PT"},
        ):
            if _assert_same(body, headers, f"{path.name} {headers}"):
                accepted.add(path.name)
    assert {"jornaldenoticias-rbren.xml", "orenru-danmactough.xml"} <= accepted


def test_read_declines_what_utf8_document_declines() -> None:
    body = _rss("<item><title>Ж</title></item>", decl='<?xml version="1.0" encoding="bogus"?>')
    assert utf8_document(body, {}) is None
    assert fastparse.read(body, {}, author_cap=MAX_AUTHOR) is None
