"""Which of a feed's entries are stored already: the fingerprints its last parse left on its row.

A feed that changed usually shows 48 entries it showed before and 2 new ones. Every entry of a
poll that was written successfully is stored as seen in this feed (stored by it, or with a
sighting in it) when the batch commits, so the feed-state write records an 8-byte fingerprint
of each entry it showed
(``Feed.entry_fingerprints``, in the same transaction). The next poll of the feed — in any
process, on any host — marks the entries whose fingerprint is on the row as known
(``parse_feed(known=...)``): their text work is skipped, and they are neither looked up in the
database nor normalized. The others take the usual path (``store.stored_keys``).

A fingerprint hashes what decides an entry's identity key (its guid, link and base, and the URL
the feed was fetched from), before any canonicalization, so checking it costs one hash; equal
fingerprints mean equal identity keys. An entry whose
fingerprint is missing (a first poll, a row written before this column, a collision-free miss)
only costs the database question. Collisions: 8 bytes, ~50 entries per feed: ~2^-53 per poll.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # parse imports this module
    from feedwatch.parse import Known, ParsedFeed

SIZE = 8


def fingerprint(guid: str | None, link: str | None, base: str | None, feed_url: str) -> bytes:
    data = f"{guid or ''}\n{link or ''}\n{base or ''}\n{feed_url}".encode("utf-8", errors="surrogatepass")
    return hashlib.blake2b(data, digest_size=SIZE).digest()


def fingerprints(parsed: ParsedFeed) -> bytes:
    """The row value after the feed's entries were stored (and its ``kept`` items, which
    feedwatch.splice did not parse again): their fingerprints, sorted, concatenated. The parse
    gives every entry with a guid or a link its fingerprint (``ParsedEntry.fingerprint``); an
    entry without either is keyed by its title and date: never known, never kept."""
    prints = {e.fingerprint for e in parsed.entries if e.fingerprint}
    prints.update(item.fingerprint for item in parsed.kept)
    return b"".join(sorted(prints))


def predicate(stored: bytes | None) -> Known | None:
    """``known(fingerprint)`` for a parse of a feed whose row holds ``stored`` (the fingerprint
    hashes the URL the feed was fetched from: a feed fetched elsewhere knows none of them)."""
    if not stored:
        return None
    return {stored[i : i + SIZE] for i in range(0, len(stored), SIZE)}.__contains__
