"""Parse only the items a changed feed did not show last time, by their bytes.

A feed that changed usually shows 2 new items and 48 it showed before, byte for byte. The fast
path (:mod:`feedwatch.fastparse`) still decoded, parsed and walked all 50, and marked the 48 known
(:mod:`feedwatch.known`): 0.77 of a changed feed's 1.6 ms in the benchmark; spliced, 0.23
(docs/performance-history.md, round 16). Here the body is cut into its items' byte spans first:
a span whose bytes were an item of the last parse, in the same surroundings, is that item again,
and only the rest of the document — the feed's own elements and the new items — is parsed.

**The record** (``Feed.item_spans``, written with the rest of the feed state in the poll's
transaction, as ``entry_fingerprints`` is): after a parse by the fast path whose items are cut
one to one into spans, for each item in document order its span's 64-bit hash (xxh3), its
fingerprint (:func:`feedwatch.known.fingerprint`; zero for an item without guid and link, which
is never known), the one date the schedule reads of it (``published``, else ``updated``) and
its span's length; before them the item tag, the **context** and a hash of the entries' base
URL. A record of version 1 (before the lengths) is not read: a feed's first changed poll after
the upgrade parses its whole body, as a feed's first poll does.

**When a span counts as known.** Its hash is in the record, its fingerprint is not zero, and the
context is the same. The context is what, outside an item's own bytes, can change how the fast
path reads it: the URL it was fetched from, the Content-Type and Content-Language headers, and
every piece of markup outside the items — the XML declaration, the root's and the channel's
start tags with their namespace declarations, ``xml:lang`` on an Atom root — as a hash of the
tags without the text between them (a new ``lastBuildDate`` does not change it; a new attribute
or element does). The one piece of text that reaches the items, the channel's link (their base
URL), is compared after the parse. Identical bytes in an identical context are read identically:
every check the fast path makes on an item was made on these bytes when they were recorded.

**What is parsed.** The document with the known spans left out: the feed's elements, the text
between items, and the new spans in their places. The known items come back as the recorded
items themselves (``ParsedFeed.kept``: fingerprint and date), which is all a poll reads of a
known entry. If that parse is not the fast path's, or does not give one entry per new span, or
the base moved, the caller parses the whole body as before.

**Cutting.** One regular-expression walk from item boundary to item boundary, CDATA sections,
comments and processing instructions matched whole (so the cut is linear in the body): an
``<item`` or ``</item>`` inside them is text. A nested or unclosed item, a section
never closed, or an empty ``<item/>`` (feedparser makes two entries of the item around it),
gives no cut.

**Known items are not walked.** Where an item starts, the walk first looks for the recorded
item it expects there (the one after the last it recognized, in the record's order): if that
many bytes from the item's start have the recorded span's hash, they are that item, and the walk
goes on after them without stopping at each of their tags (a farm item has 14 of them). This
is exact: a recorded span was cut by this walk, from an item's start outside any item to its
close, every section in it closed in it; standing at an item's start outside any item, the walk
reads the same bytes the same way and would close the item at their end. Where the expected
item is not there (a new item, an edited one, one moved), the walk reads the item tag by tag
and then expects the recorded item after the one it found, if it found one. A changed farm
feed's cut: 1.14 → 0.50 M instructions, 79 → 38 µs (docs/performance-history.md, round 57).

Collisions: a new item mistaken for a known one needs equal 64-bit hashes of different spans:
~2^-58 per changed poll of 50 items. So does the walk taking other bytes for an expected item
(one comparison at each item's start).

``tests/unit/test_splice.py`` holds a spliced parse to the whole parse's meaning (the same feed
fields, entries, fingerprints, schedule dates and next record) on generated RSS and Atom edited
at random and on the shared corpus's real feeds edited four ways.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache, partial
from itertools import starmap
from operator import itemgetter
from typing import NamedTuple

import xxhash

from feedwatch.immutable import immutable
from feedwatch.known import SIZE as FINGERPRINT_SIZE

_VERSION = 2
_HEADER = struct.Struct("<BB2xQQ")  # version, tag kind, context hash, base hash
#: Span hash, fingerprint, date (µs since 1970, or NO_DATE), span length.
_ITEM = struct.Struct("<Q8sqI")
NO_DATE = -(1 << 63)
NO_FINGERPRINT = bytes(FINGERPRINT_SIZE)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
#: Item element per feed format (feedparser's version names); other formats are not recorded.
TAGS = {"rss20": b"item", "rss10": b"item", "atom10": b"entry"}
_KINDS = (b"item", b"entry")
_MARKUP = re.compile(rb"<[^>]*>")


class Item(NamedTuple):
    """One item of a record: its span's hash, its fingerprint (zero: never known), its date
    (µs since 1970, or ``NO_DATE``) and its span's length in bytes."""

    span: int
    fingerprint: bytes
    micros: int
    length: int

    @property
    def date(self) -> datetime | None:
        return None if self.micros == NO_DATE else date_of(self.micros)


def micros(date: datetime | None) -> int:
    """An aware date as microseconds since 1970 (``Item.micros``); ``NO_DATE`` for None."""
    return NO_DATE if date is None else (date - _EPOCH) // _MICROSECOND


def date_of(micros: int) -> datetime:
    """The aware UTC date of microseconds since 1970."""
    return _EPOCH + timedelta(microseconds=micros)


_SPAN = itemgetter(0)  # an item's span hash
#: ``Item._make`` without its Python frame (the tuples come from ``_ITEM``: four fields each).
_new_item = partial(tuple.__new__, Item)


@immutable
class Record:
    tag: bytes
    context: int
    base: int
    items: tuple[Item, ...]

    def encode(self) -> bytes:
        head = _HEADER.pack(_VERSION, _KINDS.index(self.tag), self.context, self.base)
        return head + b"".join(starmap(_ITEM.pack, self.items))

    @classmethod
    def decode(cls, data: bytes | None) -> Record | None:
        """The record in ``data``; None for nothing, another version or a damaged value."""
        if not data or len(data) < _HEADER.size or (len(data) - _HEADER.size) % _ITEM.size:
            return None
        version, kind, context, base = _HEADER.unpack_from(data)
        if version != _VERSION or kind >= len(_KINDS):
            return None
        items = tuple(map(_new_item, _ITEM.iter_unpack(memoryview(data)[_HEADER.size :])))
        return cls(_KINDS[kind], context, base, items)

    def known(self) -> dict[int, Item]:
        """Span hash → item, for the items that can be known (those with a fingerprint)."""
        return {item.span: item for item in self.items if item.fingerprint != NO_FINGERPRINT}


@immutable
class Cut:
    """A body cut into its items' spans: ``pieces`` are the bytes around them (one more than
    the spans), ``hashes`` the spans' hashes, ``context`` as in the module docstring."""

    tag: bytes
    spans: tuple[tuple[int, int], ...]
    hashes: tuple[int, ...]
    pieces: tuple[bytes, ...]
    context: int

    def without(self, body: bytes, keep: Sequence[bool]) -> bytes:
        """The body with only the spans marked in ``keep`` left in it."""
        parts = [self.pieces[0]]
        for (start, end), kept, piece in zip(self.spans, keep, self.pieces[1:], strict=True):
            if kept:
                parts.append(body[start:end])
            parts.append(piece)
        return b"".join(parts)


def cut(
    body: bytes, tag: bytes, url: str, headers: Mapping[str, str], last: Record | None = None
) -> Cut | None:
    """``body`` cut at its ``tag`` elements, or None where the cut would not be safe (module
    docstring). ``headers`` have lower-case names. ``last``, the feed's record, names the items
    the walk can recognize by their bytes instead of walking them."""
    walked = _walk(body, tag, last.items if last is not None and last.tag == tag else ())
    if walked is None:
        return None
    return Cut(
        tag,
        tuple(walked.spans),
        tuple(walked.hashes),
        tuple(walked.pieces),
        _context(walked.pieces, url, headers),
    )


class _Walk(NamedTuple):
    spans: list[tuple[int, int]]
    hashes: list[int]
    pieces: list[bytes]  # the bytes before each span, and after the last


def _walk(body: bytes, tag: bytes, expected: Sequence[Item] = ()) -> _Walk | None:
    """Where each ``tag`` element starts and ends. CDATA sections, comments and processing
    instructions (the XML declaration too) are matched whole, so an item tag in their text is
    text; one never closed gives no cut. Where an item starts, the next of the ``expected``
    items, if its bytes are there, is taken without its tags being walked (module docstring)."""
    search = _tokens(tag).search
    spans: list[tuple[int, int]] = []
    hashes: list[int] = []
    pieces: list[bytes] = []
    order: tuple[int, ...] = ()  # the expected items' hashes, once an item has been walked
    following = 0  # the expected item looked for next
    end = at = 0  # the last item's end; where the walk goes on
    while (found := search(body, at)) is not None:  # between items, to the next one's start
        kind = found.lastgroup
        if kind is None:  # a CDATA section, comment or processing instruction
            at = found.end()
            continue
        if kind != "open":  # a close outside an item, or a section never closed
            return None
        start, at = found.span()
        pieces.append(body[end:start])
        if following < len(expected):
            span, _, _, length = expected[following]
            if xxhash.xxh3_64_intdigest(body[start : start + length]) == span:
                end = at = start + length
                spans.append((start, end))
                hashes.append(span)
                following += 1
                continue
        while (found := search(body, at)) is not None and found.lastgroup is None:
            at = found.end()  # a section inside the item
        if found is None or found.lastgroup != "close":  # never closed, an item inside it, or
            return None  # a section never closed
        end = at = found.end()
        span = xxhash.xxh3_64_intdigest(body[start:end])
        spans.append((start, end))
        hashes.append(span)
        if expected:
            order = order or tuple(map(_SPAN, expected))
            if span in order:
                following = order.index(span) + 1
    pieces.append(body[end:])
    return _Walk(spans, hashes, pieces)


@cache
def _tokens(tag: bytes) -> re.Pattern[bytes]:
    """One pattern for the whole walk: each ``search`` runs it in C to the next token, passing
    over every other tag without a match, where a ``search`` per token with a ``bytes.find`` per
    section cost ~1.3x as much (a ``finditer`` over the body was no faster than a ``search`` a
    token; round 57 needs the walk to jump over known items). The sections are
    written as unrolled loops (``[^]]*(?:](?!]>)[^]]*)*``: up to the first ``]]>``), which stay
    linear, also when one never closes; lazy ``.*?`` was ~15x slower (round 33 in
    docs/performance-history.md). Every alternative starts with the one ``<``, which the engine
    looks for first."""
    name = re.escape(tag)
    return re.compile(
        rb"<(?:"
        rb"!\[CDATA\[[^\]]*(?:\](?!\]>)[^\]]*)*\]\]>"
        rb"|!--[^-]*(?:-(?!->)[^-]*)*-->"
        rb"|\?[^?]*(?:\?(?!>)[^?]*)*\?>"
        rb"|(?P<open>" + name + rb")(?=[\s/>])"
        rb"|(?P<close>/)" + name + rb"\s*>"
        rb"|(?P<unclosed>!\[CDATA\[|!--|\?)"
        rb")"
    )


def _context(pieces: Sequence[bytes], url: str, headers: Mapping[str, str]) -> int:
    digest = xxhash.xxh3_64()
    for value in (url, headers.get("content-type", ""), headers.get("content-language", "")):
        digest.update(value.encode("utf-8", errors="surrogatepass"))
        digest.update(b"\0")
    for piece in pieces:  # the markup only: not how many pieces (items), nor the text between
        if piece:
            for markup in _MARKUP.findall(piece):
                digest.update(markup)
    return digest.intdigest()


def base_hash(base: str) -> int:
    return xxhash.xxh3_64_intdigest(base.encode("utf-8", errors="surrogatepass"))


def item(span: int, fingerprint: bytes | None, date: datetime | None, length: int) -> Item:
    """The record of one parsed item: its span's hash, its entry's fingerprint (None: no guid
    and no link, never known), its date and its span's length."""
    return Item(span, fingerprint or NO_FINGERPRINT, micros(date), length)


def record(found: Cut, base: str, entries: Sequence[tuple[bytes | None, datetime | None]]) -> bytes | None:
    """The record of a parse whose entries, one per span in order, have these (fingerprint,
    date); None if they are not one per span."""
    if len(entries) != len(found.spans):
        return None
    items = tuple(
        item(span, fingerprint, date, end - start)
        for span, (fingerprint, date), (start, end) in zip(found.hashes, entries, found.spans, strict=True)
    )
    return Record(found.tag, found.context, base_hash(base), items).encode()
