"""Parse stage: fetched bytes + response headers → :class:`ParsedFeed`. Pure: no I/O, no clock.

XML feeds (RSS 0.9x/1.0/2.0, Atom) go through feedparser, JSON Feed through
:mod:`feedwatch.jsonfeed`; well-formed RSS 2.0, RSS 1.0 and Atom 1.0, in UTF-8 or another
ASCII-based encoding, first try :mod:`feedwatch.fastparse`, which answers what feedparser would,
~5-10× faster, or declines. feedparser only ever receives
bytes: given a string it would open URLs and local files itself.

Failures are one exception with a class an operator acts on::

    ParseError
      error_class = "not_a_feed"   empty body, an HTML page, XML or JSON without a feed root
      error_class = "parse_error"  looked like a feed but is broken beyond use

A feed that is malformed (``bozo``) but still yields a title or entries is kept, with the reason
in ``bozo_message``; an empty channel is a valid feed with no entries.

Hostile input, and what bounds it:

* External entities (XXE) and entity expansion (billion laughs): feedparser strips every
  ``<!ENTITY>`` that is not a plain literal before expat sees the document, and turns off
  external general entities; ``tests/unit/test_parse.py`` holds both.
* ReDoS: feedparser runs a backtracking e-mail regex over the whole author string, quadratic in
  its length (8 KB ≈ 0.7 s, 100 KB ≈ minutes). :func:`_bounded_sync_author_detail` caps the string
  before that regex runs. feedparser's XML-declaration pattern backtracks cubically on a first
  line full of ``encoding='`` (52 KB: over six minutes): :class:`_LinearPiEncoding` takes its
  place with the same answers in linear time.
* Size: at most :data:`MAX_ENTRIES` entries and :data:`MAX_RAW_FIELD` characters per raw field.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import feedparser
import feedparser.encodings
import feedparser.mixin

from feedwatch import splice
from feedwatch.fastparse import complete, read
from feedwatch.fastparse_encoding import pi_encoding
from feedwatch.immutable import immutable
from feedwatch.known import fingerprint as _fingerprint

MAX_ENTRIES = 1_000
MAX_RAW_FIELD = 1_000_000  # raw HTML per field; normalize caps the plain text much lower
MAX_RAW_TITLE = 10_000
MAX_AUTHOR = 500  # well above any real byline, small enough for feedparser's quadratic regex

NOT_A_FEED = "not_a_feed"
PARSE_ERROR = "parse_error"


class ParseError(Exception):
    """A classified parse failure (``error_class`` is ``not_a_feed`` or ``parse_error``)."""

    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(f"{error_class}: {message}")
        self.error_class = error_class
        self.message = message


@immutable
class ParsedEntry:
    guid: str | None
    link: str | None
    title: str  # raw: may hold HTML
    summary_html: str
    content_html: str
    author: str | None
    published: datetime | None  # aware, UTC
    updated: datetime | None  # aware, UTC
    language: str | None
    base: str | None  # absolute base URL for relative links in this entry
    # Marked by ``parse_feed(known=...)``: the caller has stored this entry already. A known
    # entry read by the fast path carries only its identity and dates (texts left empty).
    known: bool = False
    # feedwatch.known's fingerprint of the entry's identity; None without guid and link.
    fingerprint: bytes | None = None

    @property
    def date(self) -> datetime | None:
        """The one date the schedule reads of an entry: published, else updated."""
        return self.published or self.updated

    def without_texts(self) -> ParsedEntry:
        """This entry with its raw texts (title, summary, content) dropped, once its draft holds
        them. Built field by field: ``dataclasses.replace`` took 4.1 µs an entry against 2.0, a
        new item's ~1 % of a feeds worker (tests/unit/test_parse.py holds the two equal)."""
        return ParsedEntry(
            guid=self.guid,
            link=self.link,
            title="",
            summary_html="",
            content_html="",
            author=self.author,
            published=self.published,
            updated=self.updated,
            language=self.language,
            base=self.base,
            known=self.known,
            fingerprint=self.fingerprint,
        )


@immutable
class ParsedFeed:
    title: str
    link: str | None
    language: str | None
    entries: tuple[ParsedEntry, ...]
    bozo: bool
    bozo_message: str | None
    ttl_minutes: int | None
    update_period: str | None
    update_frequency: int | None
    hub_url: str | None
    self_url: str | None
    format: str  # feedparser's version ("rss20", "atom10", "rss10", ...), "json" or "unknown"
    # Items not parsed because their bytes are those of items the last parse recorded
    # (feedwatch.splice): stored already, like known entries; each its fingerprint and date.
    kept: tuple[splice.Item, ...] = ()
    # What the next parse of this feed may splice from (feedwatch.splice; Feed.item_spans).
    spans: bytes | None = None


def _install_author_guard() -> None:
    """Cap the author string before feedparser's backtracking e-mail regex sees it."""
    mixin: Any = feedparser.mixin._FeedParserMixin
    original: Callable[..., None] = mixin._sync_author_detail
    if getattr(original, "_feedwatch_bounded", False):
        return

    def _bounded_sync_author_detail(self: Any, key: str = "author") -> None:
        context = self._get_context()
        value = context.get(key)
        if isinstance(value, str) and len(value) > MAX_AUTHOR:
            context[key] = value[:MAX_AUTHOR]
        original(self, key)

    _bounded_sync_author_detail._feedwatch_bounded = True  # type: ignore[attr-defined]
    mixin._sync_author_detail = _bounded_sync_author_detail


_install_author_guard()


@dataclass(frozen=True)
class _PiMatch:
    value: bytes

    def groups(self) -> tuple[bytes]:  # all convert_to_utf8 reads of the match
        return (self.value,)


@dataclass(frozen=True)
class _LinearPiEncoding:
    """Stands in for feedparser's ``encodings.RE_XML_PI_ENCODING``, whose ``.match(data)`` it
    answers as the pattern would (``feedwatch.fastparse_encoding.pi_encoding``, checked against
    the pattern) but in linear time: the pattern backtracks cubically on a first line full of
    ``encoding='`` (13 KB took ~10 s, 52 KB over six minutes), and feedparser runs it on every
    document it parses, so one such feed held a worker for minutes."""

    original: Any  # feedparser's own pattern: a re-import of this module finds it here

    def match(self, data: bytes) -> _PiMatch | None:
        value = pi_encoding(data)
        return None if value is None else _PiMatch(value)


#: How feedwatch calls ``feedparser.parse``: normalize turns the HTML into text (nh3) and
#: resolves links against the entry's base itself. ``benchmarks/run.py``'s ingest baseline
#: (feedparser alone) uses the same options.
FEEDPARSER_OPTIONS: Mapping[str, Any] = {"sanitize_html": False, "resolve_relative_uris": False}


#: feedparser's own pattern, as it was before :func:`_install_encoding_guard` (the tests' oracle).
FEEDPARSER_PI_ENCODING: Any = getattr(
    feedparser.encodings.RE_XML_PI_ENCODING, "original", feedparser.encodings.RE_XML_PI_ENCODING
)


def _install_encoding_guard() -> None:
    feedparser.encodings.RE_XML_PI_ENCODING = _LinearPiEncoding(FEEDPARSER_PI_ENCODING)


_install_encoding_guard()


#: ``known(fingerprint)``: True for an entry the caller has stored already (feedwatch.known).
Known = Callable[[bytes], bool]


def parse_feed(
    body: bytes,
    *,
    headers: Mapping[str, str],
    url: str,
    fast: bool = True,
    known: Known | None = None,
    spans: bytes | None = None,
) -> ParsedFeed:
    """Parse one fetched document; raises :class:`ParseError` (never anything else).

    ``fast=False`` skips :mod:`feedwatch.fastparse` (the tests compare both ways). ``known``
    marks entries the caller has stored already (``ParsedEntry.known``); the fast path then skips
    their text work, which is most of a re-read feed's parse (a poll that finds 2 new items of
    50 needs the texts of 2). ``spans`` is the record the last parse of this feed left
    (``ParsedFeed.spans``): items whose bytes it holds are not parsed again (:mod:`feedwatch.splice`).
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    head = body[:1024].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head:
        raise ParseError(NOT_A_FEED, "empty body")
    if _is_json(head, lowered.get("content-type", "")):
        from feedwatch.jsonfeed import parse_json_feed

        return parse_json_feed(body, url=url)
    # No Content-Location: feedparser would resolve non-permalink-looking guids such as "123"
    # into URLs; normalize resolves links against ``base`` itself.
    lowered.pop("content-location", None)
    if not fast:
        return _parse_feedparser(body, lowered, url, known)
    last = splice.Record.decode(spans)
    found = splice.cut(body, last.tag, url, lowered, last) if last is not None else None
    if last is not None and found is not None and found.context == last.context:
        spliced = _splice(body, lowered, url, known, last, found)
        if spliced is not None:
            return spliced
    parsed = _parse_fast(body, lowered, url, known)
    if parsed is None:
        return _parse_feedparser(body, lowered, url, known)
    tag = splice.TAGS.get(parsed.format)
    if tag != (last.tag if last is not None else None):  # else ``found`` is this tag's cut already
        found = splice.cut(body, tag, url, lowered) if tag else None
    if found is None:
        return parsed
    entries = [(e.fingerprint, e.date) for e in parsed.entries]
    return replace(parsed, spans=splice.record(found, _base(url, parsed.link), entries))


def _splice(
    body: bytes,
    headers: dict[str, str],
    url: str,
    known: Known | None,
    last: splice.Record,
    found: splice.Cut,
) -> ParsedFeed | None:
    """The parse of ``body`` without the items ``last`` recorded (``ParsedFeed.kept``); None
    where the whole body must be parsed (feedwatch.splice)."""
    if len(found.spans) > MAX_ENTRIES:
        return None
    recorded = last.known()
    old = [recorded.get(span) for span in found.hashes]
    if not any(old):
        return None
    parsed = _parse_fast(found.without(body, [item is None for item in old]), headers, url, known)
    if parsed is None or splice.base_hash(_base(url, parsed.link)) != last.base:
        return None
    if len(parsed.entries) != old.count(None):
        return None  # not one entry per new span
    new = iter(parsed.entries)
    items = []
    for span, (start, end), item in zip(found.hashes, found.spans, old, strict=True):
        if item is None:  # the entry parsed from this span
            entry = next(new)
            item = splice.item(span, entry.fingerprint, entry.date, end - start)
        items.append(item)
    kept = tuple(item for item in old if item is not None)
    record = splice.Record(last.tag, found.context, last.base, tuple(items)).encode()
    return replace(parsed, kept=kept, spans=record)


def _is_json(head: bytes, content_type: str) -> bool:
    if head.startswith(b"{"):
        return True
    # A JSON content type with an XML body is a mislabelled XML feed, which is common.
    return "json" in content_type.lower() and not head.startswith(b"<")


def _parse_fast(body: bytes, headers: dict[str, str], url: str, known: Known | None) -> ParsedFeed | None:
    """The fast path's parse (:mod:`feedwatch.fastparse`), or None where feedparser must read it."""
    fast_read = read(body, headers, author_cap=MAX_AUTHOR)
    if fast_read is None:
        return None
    feed, entries, version = fast_read
    return _build_feed(feed, entries, url, version, False, None, known)


def _parse_feedparser(body: bytes, headers: dict[str, str], url: str, known: Known | None) -> ParsedFeed:
    try:
        result = feedparser.parse(body, response_headers=headers, **FEEDPARSER_OPTIONS)
    # feedparser on hostile bytes is third-party code we cannot audit fully: any crash is this
    # feed's classified failure, never the worker's.
    except Exception as exc:
        raise ParseError(PARSE_ERROR, f"feedparser failed: {type(exc).__name__}: {exc}") from exc
    feed = result.get("feed", {})
    entries = result.get("entries", [])
    version = result.get("version") or ""
    bozo = bool(result.get("bozo"))
    bozo_message = (str(result.get("bozo_exception", "")) or None) if bozo else None
    title = _text(feed.get("title"), MAX_RAW_TITLE)
    if not version and (not entries or _looks_like_html(body)):
        # Entries without a known root are kept (CDF and other oddities feedparser reads).
        if _looks_like_html(body) or not bozo or not _looks_like_feed(body):
            raise ParseError(NOT_A_FEED, "no RSS, RDF or Atom root element")
        raise ParseError(PARSE_ERROR, f"unreadable document: {bozo_message}")
    if bozo and not entries and not title:
        raise ParseError(PARSE_ERROR, f"malformed feed with no usable content: {bozo_message}")
    return _build_feed(feed, entries, url, version or "unknown", bozo, bozo_message, known)


def _base(url: str, site: str | None) -> str:
    """Relative item links are resolved against xml:base, else the channel's site link (as
    miniflux does: RSS links are site pages), else the feed's own URL."""
    return _join(url, site) if site else url


def _build_feed(
    feed: Any,
    entries: list[Any],
    url: str,
    version: str,
    bozo: bool,
    bozo_message: str | None,
    known: Known | None = None,
) -> ParsedFeed:
    links = feed.get("links") or []
    link = _opt(feed.get("link"))
    base = _base(url, link)
    return ParsedFeed(
        title=_text(feed.get("title"), MAX_RAW_TITLE),
        link=link,
        language=_opt(feed.get("language")),
        entries=tuple(_entry(e, base, url, known) for e in entries[:MAX_ENTRIES]),
        bozo=bozo,
        bozo_message=bozo_message,
        ttl_minutes=_int(feed.get("ttl")),
        update_period=_opt(feed.get("sy_updateperiod")),
        update_frequency=_int(feed.get("sy_updatefrequency")),
        hub_url=_rel_link(links, "hub"),
        self_url=_rel_link(links, "self"),
        format=version,
    )


def _entry(e: Any, base: str, url: str, known: Known | None) -> ParsedEntry:
    xml_base = _opt(_detail(e).get("base"))
    guid, link = _opt(e.get("id")), _opt(e.get("link"))
    base = _join(base, xml_base) if xml_base else base
    fingerprint = _fingerprint(guid, link, base, url) if guid or link else None
    is_known = known is not None and fingerprint is not None and known(fingerprint)
    # dict.get: FeedParserDict would answer a missing "updated" with "published" (and warn).
    published = _struct_time(dict.get(e, "published_parsed"))
    updated = _struct_time(dict.get(e, "updated_parsed"))
    if "_texts" in e:
        # Read by the fast path, its texts left for later: a known entry carries only its
        # identity and dates (texts and language empty); the others are completed now.
        if is_known:
            return ParsedEntry(
                guid=guid, link=link, title="", summary_html="", content_html="", author=None,
                published=published, updated=updated, language=None, base=base, known=True,
                fingerprint=fingerprint,
            )  # fmt: skip
        e = complete(e)
    contents = e.get("content") or []
    content = max((_text(c.get("value"), MAX_RAW_FIELD) for c in contents), key=len, default="")
    return ParsedEntry(
        guid=guid,
        link=link,
        title=_text(e.get("title"), MAX_RAW_TITLE),
        summary_html=_text(e.get("summary"), MAX_RAW_FIELD),
        content_html=content,
        author=_opt(e.get("author"), MAX_AUTHOR),
        published=published,
        updated=updated,
        language=_opt(_detail(e).get("language")),
        base=base,
        known=is_known,
        fingerprint=fingerprint,
    )


def _join(base: str, reference: str) -> str:
    """``reference`` resolved against ``base``; ``base`` when ``reference`` cannot be parsed as a
    URL (``https://[host/``: urllib raises ValueError, which must not escape ``parse_feed``)."""
    try:
        return urljoin(base, reference)
    except ValueError:
        return base


def _detail(e: Any) -> Any:
    """The entry's title or summary details: its xml:base and xml:lang, as feedparser saw them."""
    return e.get("title_detail") or e.get("summary_detail") or {}


def _looks_like_html(body: bytes) -> bool:
    head = body[:2048].lower()
    return b"<html" in head or b"<!doctype html" in head


def _looks_like_feed(body: bytes) -> bool:
    """A feed root name near the start: a broken feed rather than some other document."""
    head = body[:4096].lower()
    return any(tag in head for tag in (b"<rss", b"<feed", b"<rdf:rdf", b"<channel"))


def _text(value: object, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _opt(value: object, limit: int = MAX_RAW_TITLE) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()[:limit]
    return value or None


def _int(value: object) -> int | None:
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if 0 <= number <= 10_000_000 else None


def _rel_link(links: list[Any], rel: str) -> str | None:
    for link in links:
        if isinstance(link, Mapping) and link.get("rel") == rel:
            return _opt(link.get("href"))
    return None


def _struct_time(value: object) -> datetime | None:
    """feedparser's ``*_parsed`` values are UTC ``struct_time``s."""
    if not isinstance(value, time.struct_time):
        return None
    try:
        # The fields as they stand when they form a valid date (the usual case, and the same
        # moment timegm gives) ...
        return datetime(*value[:6], tzinfo=UTC)
    except (ValueError, OverflowError, TypeError):
        pass
    try:
        # ... else as timegm reads them (a leap second, day 0, an hour of 24, a float).
        return datetime.fromtimestamp(calendar.timegm(value), UTC)
    except (OverflowError, ValueError, OSError):
        return None
