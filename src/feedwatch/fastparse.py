"""Fast path of the parse stage: well-formed RSS 2.0, RSS 1.0 and Atom 1.0 read with lxml, ~20×
faster than feedparser.

feedparser is the reference reader, and it is slow: ~0.3 ms per item in its pure-Python SAX
handlers, while lxml builds the same tree in C. Most news feeds are plain, well-formed RSS 2.0
or Atom, so :func:`read` reads those (Atom with :mod:`feedwatch.fastparse_atom`, RSS 1.0 with
:mod:`feedwatch.fastparse_rdf`) and answers exactly what feedparser would have answered for the
fields :mod:`feedwatch.parse` keeps; anything it does not fully understand returns ``None`` and
the caller parses with feedparser as before. It never raises.

"Exactly" is held by ``tests/unit/test_fastparse.py`` (encodings: ``test_fastparse_encoding.py``),
which parses every feed of the shared corpora and thousands of generated ones both ways and
compares the results, and which checks that every element this module skips leaves feedparser's
answer unchanged.

What falls back to feedparser (returns ``None``):

* not well-formed XML, a DOCTYPE (entity declarations are feedparser's hardened business), a
  root other than ``<rss version="2.x">`` with one ``<channel>`` (in no namespace, or in
  UserLand's, which feedparser reads as none), ``<rdf:RDF>`` or Atom's ``<feed>``; RSS 1.0's
  namespace on an ``<rss>`` root (feedparser's version would be ``rss10``);
* what :mod:`feedwatch.fastparse_encoding` declines: a Content-Type feedparser flags (not XML,
  missing in a response), bytes that do not decode in the encoding feedparser tries first
  (``text/*`` without charset is US-ASCII), UTF-16/32;
* ``xml:lang``/``xml:base`` (or ``lang``/``base``) attributes anywhere, attributes on items and
  channels but RSS 1.0's ``rdf:about`` (an item's is its id);
* an element this module does not interpret, unless feedparser files it away under its own key:
  a leaf known to be harmless (``yandex:full-text``, ``media:thumbnail``, ``category``, ...) or
  an element without a handler holding only such (``orfon:substories``, ``rdf:Seq``);
* a repeated field in one item or channel (feedparser's order rules for duplicates are subtle);
* a date this module cannot parse the way feedparser does (it calls feedparser's own parser).

What it replicates (feedparser 6, ``encodings``, ``mixin.pop`` and ``namespaces/_base``): the
document decoded as feedparser decodes it (ISO-8859-1, windows-1251, KOI8-R, Shift_JIS, ...,
by the same precedence of charset, declaration and default), values stripped,
UTF-8-read-as-Latin-1 mojibake repaired, C1 controls mapped to cp1252, links with ``&amp;``
unescaped and ``&x;`` fragments repaired, ``isPermaLink`` guids used as links, the description
as summary (else the content), Content-Language as every entry's language. Also what it does
with three shapes of real feeds: ``media:description`` is a description to feedparser (the first
of two is the summary, the second the content), a non-alternate ``atom:link`` in an item only
joins its links, and an empty ``<item/>`` inside an item (FeedBurner) is an empty entry of its own.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, NamedTuple, Protocol

from feedparser.api import StrictFeedParser
from feedparser.datetimes import _parse_date
from feedparser.html import _cp1252
from feedparser.urls import _urljoin
from lxml import etree

from feedwatch.fastparse_encoding import utf8_document

Fields = dict[str, Any]

# The characters feedparser's cp1252 repair maps (C1 controls). ``str.translate`` with a dict
# looks up every character of a non-ASCII text: 26 µs for a 444-character Cyrillic teaser, 6 %
# of a feeds worker's ingest samples; the search that finds none costs 1.6 (round 20).
_CP1252_KEYS = re.compile("[" + re.escape("".join(map(chr, sorted(_cp1252)))) + "]")

_CONTENT = "{http://purl.org/rss/1.0/modules/content/}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_ATOM = "{http://www.w3.org/2005/Atom}"
_SY = "{http://purl.org/rss/1.0/modules/syndication/}"
_MEDIA = "{http://search.yahoo.com/mrss/}"
_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"

# Item children read here → the feedparser element name their value is stored under.
_ITEM_FIELDS = {
    "title": "title",
    "link": "link",
    "guid": "id",
    "pubDate": "published",
    "author": "author",
    f"{_DC}creator": "author",
    f"{_DC}date": "updated",
    f"{_CONTENT}encoded": "content",
}
# Date fields → the key of feedparser's parsed value.
_PARSED = {"published": "published_parsed", "updated": "updated_parsed"}
# Item fields whose text work waits until the entry is known to be needed.
_DEFERRED = frozenset({"title", "summary", "content", "author"})
# feedparser reads both as an item's description: the first is the summary, a second one becomes
# the content (``_start_description`` when the item has a summary and no content yet).
_DESCRIPTIONS = frozenset({"description", f"{_MEDIA}description"})
_CHANNEL_FIELDS = {
    "title": "title",
    "link": "link",
    "language": "language",
    f"{_DC}language": "language",  # with <language> too, the later one wins, as in feedparser
    "ttl": "ttl",
    f"{_SY}updatePeriod": "sy_updateperiod",
    f"{_SY}updateFrequency": "sy_updatefrequency",
}
# Elements feedparser handles whose handlers touch nothing parse.py keeps, where they stand
# (checked one by one against feedparser in the tests). Names as feedparser spells them: the
# namespace's standard prefix, an underscore, the local name lower-cased.
_HARMLESS_IN_ITEM = frozenset(
    {"category", "enclosure", "comments", "source", "media_thumbnail", "media_keywords",
     "dc_subject", "slash_comments", "wfw_commentrss", "wfw_comment", "georss_point",
     "itunes_explicit", "itunes_keywords", "itunes_duration", "media_credit"}
)  # fmt: skip
_HARMLESS_IN_CHANNEL = frozenset(
    {"description", "lastbuilddate", "pubdate", "generator", "copyright", "managingeditor",
     "webmaster", "cloud", "docs", "category", "itunes_explicit", "itunes_keywords",
     "itunes_image", "itunes_author", "itunes_summary", "itunes_subtitle", "itunes_block",
     "dc_publisher", "dc_rights", "dc_subject", "dc_date", "dc_creator"}
)  # fmt: skip
# Keys parse.py reads: an unhandled element stored under one of these names would change it.
_READ_KEYS = frozenset(
    {"id", "link", "links", "title", "title_detail", "summary", "summary_detail", "content",
     "author", "published_parsed", "updated_parsed", "language", "ttl", "sy_updateperiod",
     "sy_updatefrequency", "published", "updated"}
)  # fmt: skip
# Image and text input blocks: the children feedparser files under the block's own key (an
# unprefixed other element would end the block early, see ``unknown_starttag``).
_BLOCK_CHILDREN = {
    "image": frozenset({"url", "title", "link", "width", "height", "description"}),
    "textinput": frozenset({"title", "description", "name", "link"}),
}
_RDF_ABOUT = f"{_RDF}about"

_PREFIXES: dict[str, str] = {uri.lower(): prefix for uri, prefix in StrictFeedParser.namespaces.items()}
_LINK_ENTITY = re.compile("&([A-Za-z0-9_]+);")
_LANG_OR_BASE = etree.XPath("//@*[local-name()='lang' or local-name()='base']")
_BASE_OR_FOREIGN_LANG = etree.XPath(
    "//@*[local-name()='base' or (local-name()='lang' and "
    "namespace-uri()!='http://www.w3.org/XML/1998/namespace')]"
)
_VERSION_NAMESPACES = frozenset({"http://purl.org/rss/1.0/", "http://my.netscape.com/rdf/simple/0.9/"})
_local = threading.local()
# feedparser's date parser, remembered: a re-polled feed shows the same dates again (struct_time
# is immutable). ~2 MB at most.
_date = lru_cache(maxsize=16_384)(_parse_date)


def read(
    body: bytes, headers: Mapping[str, str], *, author_cap: int
) -> tuple[Fields, list[Fields], str] | None:
    """feedparser's ``feed``, ``entries`` and ``version`` for plain RSS 2.0, RSS 1.0 or Atom 1.0,
    or ``None``.

    ``headers`` are the response headers with lower-case names. Only the keys parse.py reads
    are filled in, with the values feedparser would give them; ``author_cap`` is the length
    parse.py's guard cuts authors to inside feedparser. Atom is read by
    :mod:`feedwatch.fastparse_atom`, RSS 1.0 by :mod:`feedwatch.fastparse_rdf`.
    """
    document = utf8_document(body, headers)
    if document is None:
        return None
    try:
        root = etree.fromstring(document, _parser())
    # Malformed bytes: feedparser decides (and classifies) instead.
    except (etree.LxmlError, ValueError):
        return None
    if root.getroottree().docinfo.doctype:
        return None
    language = headers.get("content-language")
    try:
        if root.tag == f"{_RDF}RDF":
            from feedwatch.fastparse_rdf import read_rdf

            return (*read_rdf(root, language, author_cap), "rss10")
        # feedparser takes its version from the first namespace it knows: RSS 1.0's would win.
        if any(uri.lower() in _VERSION_NAMESPACES for uri in root.nsmap.values()):
            return None
        _strip_plain_namespace(root)
        if root.tag == "rss" and len(root) == 1 and root[0].tag == "channel":
            if not root.get("version", "").startswith("2.") or _LANG_OR_BASE(root):
                return None
            return (*_Reader(language, author_cap).channel(root[0]), "rss20")
        if root.tag == f"{_ATOM}feed" and not _BASE_OR_FOREIGN_LANG(root):
            # A sibling module that imports this one's helpers.
            from feedwatch.fastparse_atom import read_atom

            return (*read_atom(root, language), "atom10")
    except _Unsupported:
        return None
    return None


class _Unsupported(Exception):
    """Something feedparser should decide."""


def _strip_plain_namespace(root: Any) -> None:
    """``<rss xmlns="http://backend.userland.com/rss2">`` and RSS 2.0's other early namespaces:
    feedparser reads their elements as if they had no namespace, and so does the reader once
    they are renamed."""
    namespace = etree.QName(root).namespace
    if namespace is not None and root.tag == f"{{{namespace}}}rss" and _known_prefix(namespace) == "":
        _rename_to_local(root, namespace)


def _rename_to_local(root: Any, namespace: str) -> None:
    """Take ``namespace`` off every element in it, as feedparser does with an unprefixed one."""
    for element in root.iter(f"{{{namespace}}}*"):
        element.tag = etree.QName(element).localname


def _parser() -> etree.XMLParser:
    """One parser per thread (lxml parsers are not shared between threads)."""
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        # UTF-8 whatever the declaration says: utf8_document has decided the encoding.
        parser = etree.XMLParser(
            encoding="utf-8", resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
            remove_comments=True, remove_pis=True, strip_cdata=True,
        )  # fmt: skip
        _local.parser = parser
    return parser


class _Reader:
    def __init__(self, content_language: str | None, author_cap: int) -> None:
        self.lang = content_language.replace("_", "-") if content_language else None
        self.author_cap = author_cap

    def channel(self, channel: Any) -> tuple[Fields, list[Fields]]:
        feed: Fields = {"links": []}
        if self.lang:
            feed["language"] = self.lang
        entries: list[Fields] = []
        seen: set[str] = set()
        # rdf:about names the channel (RSS 1.0); feedparser reads lastmod and href (CDF).
        _no_attributes(channel, allowed=(_RDF_ABOUT,))
        for child in channel:
            tag = child.tag
            if tag == "item":
                entries.extend(self.item(child))
            elif tag in _CHANNEL_FIELDS:
                name = _CHANNEL_FIELDS[tag]
                if tag in seen:
                    raise _Unsupported(f"repeated {tag}")
                seen.add(tag)
                _no_attributes(child)
                value = self.text(child)
                feed[name] = _LINK_ENTITY.sub(r"&\g<1>", _relative_uri(value)) if name == "link" else value
            elif tag == f"{_ATOM}link":
                feed["links"].append(_atom_link(child))
            elif tag in _BLOCK_CHILDREN:
                _check_block(child)
            else:
                _check_harmless(child, _HARMLESS_IN_CHANNEL)
        return feed, entries

    def item(self, item: Any) -> list[Fields]:
        """An entry's identity and dates; its texts wait in ``_texts`` for :func:`complete`.
        (Two entries for an item holding an empty ``<item/>``: feedparser starts one there.)

        Every check that decides whether feedparser must read the document instead is made
        here, for every item; only the text work (strip, repairs) of title, summary, content and
        author is left for the entries the caller still needs (see ``parse.parse_feed(known=)``).
        """
        entry: Fields = {}
        if item.keys():  # most items have none: the hot path pays one call
            _no_attributes(item, allowed=(_RDF_ABOUT,))
            # An RSS 1.0 item's rdf:about is its id as it stands (no value clean-up, not a link).
            if about := item.get(_RDF_ABOUT):
                entry["id"] = about
        texts: dict[str, Any] = {}
        descriptions: list[Any] = []
        guid_is_link = False
        left = False
        for child in item:
            tag = child.tag
            if left:
                # After a nested <item/> feedparser files what follows under the channel.
                _check_harmless(child, _HARMLESS_IN_CHANNEL)
                continue
            name = _ITEM_FIELDS.get(tag)
            if name is None:
                if tag in _DESCRIPTIONS:
                    if len(child):
                        raise _Unsupported(f"markup inside {tag}")
                    _no_attributes(child)
                    descriptions.append(child)
                elif tag == "item":
                    _check_nested_item(child)
                    left = True
                elif not _item_extra(child, tag):
                    _check_harmless(child, _HARMLESS_IN_ITEM)
                continue
            if name in entry or name in texts:
                raise _Unsupported(f"repeated {tag}")
            if len(child):
                raise _Unsupported(f"markup inside {tag}")
            if name == "id":
                _no_attributes(child, allowed=("isPermaLink",))
                guid_is_link = child.get("isPermaLink", "true") == "true"
            elif child.keys():
                raise _Unsupported(f"attributes on {tag}")
            if name in _DEFERRED:
                texts[name] = child
                continue
            value = self.text(child)
            if name == "id" and guid_is_link:
                value = _relative_uri(value)
            elif name == "link":
                value = _relative_uri(value)
                if "&" in value:
                    value = _LINK_ENTITY.sub(r"&\g<1>", value.replace("&amp;", "&"))
            elif name in _PARSED:
                parsed = _date(value) if value else None
                if value and parsed is None:
                    raise _Unsupported(f"date {value!r}")
                entry[_PARSED[name]] = parsed
            entry[name] = value
        if guid_is_link and "link" not in entry:
            entry["link"] = entry["id"]
        if len(descriptions) > 2 or (len(descriptions) == 2 and "content" in texts):
            raise _Unsupported("descriptions")
        texts.update(zip(("summary", "content"), descriptions, strict=False))
        entry["_texts"] = _ItemTexts(texts, self.lang, self.author_cap)
        return [entry, {"_texts": _ItemTexts({}, self.lang, self.author_cap)}] if left else [entry]

    @staticmethod
    def text(element: Any) -> str:
        """The element's text as feedparser's ``pop`` leaves it."""
        if len(element):
            raise _Unsupported(f"markup inside {element.tag}")
        value = (element.text or "").strip()
        if not value.isascii():
            # feedparser's repair for UTF-8 text that was read as Latin-1 upstream.
            with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
                value = value.encode("iso-8859-1").decode("utf-8")
            if _CP1252_KEYS.search(value):  # a scan in C; translate looks up every character
                value = value.translate(_cp1252)
        return value


def complete(entry: Fields) -> Fields:
    """Fill in the texts the reader left for later: title, summary, content, author."""
    texts: _Texts = entry.pop("_texts")
    return texts.fill(entry)


class _Texts(Protocol):
    def fill(self, entry: Fields) -> Fields: ...


class _ItemTexts(NamedTuple):
    """An RSS item's text elements by field name, done by :meth:`fill` only when needed."""

    elements: dict[str, Any]
    lang: str | None
    author_cap: int

    def fill(self, entry: Fields) -> Fields:
        detail = {"language": self.lang, "base": ""}
        for name, element in self.elements.items():
            value = _Reader.text(element)
            if name == "content":
                entry["content"] = [{"value": value}]
                continue
            if name == "author" and len(value) > self.author_cap:
                value = value[: self.author_cap]
            elif name in ("title", "summary"):
                entry[f"{name}_detail"] = detail
            entry[name] = value
        if "summary" not in entry and "content" in entry:
            entry["summary"] = entry["content"][0]["value"]
        return entry


def _no_attributes(element: Any, allowed: tuple[str, ...] = ()) -> None:
    """Attributes can change what feedparser does with an element (``mode="base64"``, ``href``)."""
    names = element.keys()
    if names and any(name not in allowed for name in names):
        raise _Unsupported(f"attributes on {element.tag}")


def _relative_uri(value: str) -> str:
    """feedparser resolves link-like values against an empty base: only its URI fix-up applies
    (slashes after ``scheme://`` dropped; ``urljoin("", x)`` is ``x``)."""
    at = value.find("://")
    return str(_urljoin("", value)) if at > 0 and value[at + 3 : at + 4] == "/" else value


def _atom_link(element: Any) -> Fields:
    rel = (element.get("rel") or "alternate").lower()
    if rel not in ("self", "hub") or len(element) or element.get("href") is None:
        # An alternate atom:link would replace the channel's link, in document order.
        raise _Unsupported(f"atom:link rel={rel}")
    return {"rel": rel, "href": _relative_uri(element.get("href"))}


def _check_nested_item(element: Any) -> None:
    """An empty ``<item/>`` inside an item (FeedBurner left them in feeds): feedparser starts a
    new, empty entry there and leaves the entry, so the item's later children go to the channel."""
    if len(element) or element.keys() or (element.text or "").strip():
        raise _Unsupported("item inside item")


_ITEM_LINK_ATTRIBUTES = frozenset({"rel", "href", "type", "title", "hreflang", "length"})
_ATOM_LINK = f"{_ATOM}link"
_MEDIA_CONTENT = f"{_MEDIA}content"


def _item_extra(element: Any, tag: str) -> bool:
    """Item children that are not plain leaves, read where feedparser leaves parse.py's keys
    alone: an ``atom:link`` that is not the alternate (it only joins the entry's ``links``), and a
    ``media:content`` (its attributes go to ``media_content``) holding only harmless leaves."""
    if tag == _ATOM_LINK:
        rel = element.get("rel")
        if rel is None or rel.lower() == "alternate" or not element.get("href") or len(element):
            raise _Unsupported(f"atom:link rel={rel} in item")
        if any(name not in _ITEM_LINK_ATTRIBUTES for name in element.attrib):
            raise _Unsupported("atom:link attributes in item")
        return True
    if tag == _MEDIA_CONTENT:
        for child in element:
            _check_harmless(child, _HARMLESS_IN_ITEM)
        return True
    return False


def _check_harmless(element: Any, harmless: frozenset[str]) -> None:
    """Raise :class:`_Unsupported` unless feedparser files ``element`` away where parse.py never
    looks: a leaf known to be harmless there, or an element whose feedparser name has no handler
    and is no key parse.py reads, holding only such elements (ORF's ``orfon:substories`` and
    RSS 1.0's ``items`` hold an ``rdf:Bag`` or ``rdf:Seq`` of ``rdf:li``); feedparser stores each
    under its name in the entry or feed it is in."""
    if not isinstance(element.tag, str):
        raise _Unsupported("markup")
    name = _feedparser_name(element)
    if name in harmless and not len(element):
        return
    if name in _READ_KEYS or not name.replace("_", "").replace("-", "").isalnum():
        raise _Unsupported(name)
    if hasattr(StrictFeedParser, f"_start_{name}") or hasattr(StrictFeedParser, f"_end_{name}"):
        raise _Unsupported(name)
    for child in element:
        _check_harmless(child, frozenset())


def _check_block(element: Any) -> None:
    """An image or text input block holding only plain leaves it knows (see ``_BLOCK_CHILDREN``)."""
    allowed = _BLOCK_CHILDREN[element.tag]
    if (element.text or "").strip() or any(c.tag not in allowed or len(c) for c in element):
        raise _Unsupported(element.tag)


def _feedparser_name(element: Any) -> str:
    """The name feedparser dispatches ``element`` under (see ``_StrictFeedParser.startElementNS``):
    a known namespace's standard prefix, else the document's own prefix."""
    tag: str = element.tag
    if tag[0] != "{":
        return tag.lower()
    namespace, _, local = tag[1:].partition("}")
    local = local.lower()
    prefix = _known_prefix(namespace)
    if prefix is None:
        prefix = element.prefix
    return f"{prefix}_{local}" if prefix else local


def _known_prefix(namespace: str) -> str | None:
    """feedparser's prefix for ``namespace`` ("" for none), ``None`` for a namespace it does not
    know. Any ``backend.userland.com/rss`` namespace is UserLand's RSS 2.0 one to feedparser."""
    lowered = namespace.lower()
    if "backend.userland.com/rss" in lowered:
        lowered = "http://backend.userland.com/rss"
    return _PREFIXES.get(lowered)
