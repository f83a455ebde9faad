"""Per process: which of a feed's entries are stored already, as the database last confirmed.

A feed that changed usually shows 48 entries it showed before and 2 new ones. The poll asks the
database which entries it has stored (``store.sighted_keys``) and normalizes only the others;
this memo remembers the answer per feed, so the next poll of the feed in this process skips
those entries from the parse on (``parse_feed(known=...)``: no text work) and asks the database
only about the rest.

Safe by construction: an identity key is remembered only after the database said it is stored
with a sighting in this feed, and a forgotten or never-seen key only costs the database
question. The memo holds the keys of each feed's latest poll (8 bytes each: a digest prefix of
the SHA-256 identity key), so it does not grow with a feed's history; at most ``max_feeds``
feeds are remembered (least recently polled forgotten first): 20,000 feeds of 50 entries ≈ 9 MB.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from feedwatch.normalize import identity_key_of
from feedwatch.parse import Known

_DIGEST = 8  # bytes of the identity key kept: collisions within one feed are ~2^-58 at 50 keys


def _digest(key: str) -> bytes:
    return bytes.fromhex(key[: 2 * _DIGEST])


class KnownEntries:
    def __init__(self, max_feeds: int = 20_000) -> None:
        self.max_feeds = max_feeds
        self._feeds: OrderedDict[int, bytes] = OrderedDict()

    def predicate(self, feed_id: int, feed_url: str) -> Known | None:
        """``known(guid, link, base)`` for this feed's parse, or None if nothing is remembered."""
        blob = self._feeds.get(feed_id)
        if not blob:
            return None
        digests = {blob[i : i + _DIGEST] for i in range(0, len(blob), _DIGEST)}

        def known(guid: str | None, link: str | None, base: str) -> bool:
            key = identity_key_of(guid, link, base, feed_url=feed_url)
            return key is not None and _digest(key) in digests

        return known

    def remember(self, feed_id: int, keys: Iterable[str]) -> None:
        """The identity keys the database confirmed stored for ``feed_id`` (replacing the last)."""
        self._feeds[feed_id] = b"".join(sorted({_digest(k) for k in keys}))
        self._feeds.move_to_end(feed_id)
        while len(self._feeds) > self.max_feeds:
            self._feeds.popitem(last=False)

    def forget(self, feed_id: int) -> None:
        self._feeds.pop(feed_id, None)
