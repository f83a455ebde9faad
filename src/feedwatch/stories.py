"""Near-duplicate stories: one alert per story, however many outlets syndicate it.

A flagged article either starts a story (it gets an alert) or joins the alert of a story seen in
the last ``story_window_hours`` as a *copy* ("also reported by"), which never alerts again, even
when the first alert was delivered long ago. The lookup lives in the database, so it holds across
worker processes, hosts and restarts.

Signature: a MinHash (``feedwatch.minhash``: datasketch's values without scipy; ``NUM_PERM``
permutations, fixed seed so every process computes the same one) of the word 3-shingles of the
folded title and text. Candidates come from LSH bands:
``BANDS`` bands of ``ROWS`` rows, each band's values hashed into a key. A story's keys are one
``StoryKeys`` row; PostgreSQL finds the stories sharing a key through the GIN index on its array,
SQLite through ``StoryBand``, the same keys one row each under a B-tree.
Two texts whose shingle sets have Jaccard similarity *s* share a band with probability
``1 - (1 - s**ROWS)**BANDS``: 0.42 at s=0.3, 0.99 at s=0.6, 1.0 above. A candidate is accepted
when the estimated similarity reaches ``story_similarity`` (0.6 by default).

A second key catches what shingles miss: the same headline (folded, at least ``TITLE_MIN_WORDS``
words) within the window is the same story even when one outlet carries only a teaser.

A poll batch's flagged articles are settled together (:func:`settle`): one query finds the
stored stories any of them may copy, and an article may also copy a story an earlier article of
the same batch starts. Known limit: two workers storing copies of one new story at the same
instant, in two open transactions, cannot see each other's bands and may both alert; this needs
two batches committing within milliseconds.
"""

from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import structlog
from sqlalchemy import bindparam
from sqlalchemy import delete as sa_delete
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from feedwatch import store
from feedwatch.immutable import immutable
from feedwatch.minhash import minhash_many
from feedwatch.models import Alert, Article, Feed, StoryBand, StoryCopy, StoryKeys
from feedwatch.store import _table
from feedwatch.textnorm import split_words

if TYPE_CHECKING:
    from feedwatch.settings import Settings

log = structlog.get_logger(__name__)

NUM_PERM: Final = 60
BANDS: Final = 20
ROWS: Final = NUM_PERM // BANDS
SEED: Final = 20240501
SHINGLE: Final = 3
TITLE_MIN_WORDS: Final = 6
_MAX_WORDS: Final = 3000  # syndication shows in the opening; bounds the hashing cost
_TITLE: Final = "t:"  # a title key's prefix; a band key's is its band's number


@dataclass(frozen=True)
class StoryPolicy:
    """When a flagged article is a copy of an earlier story (see the module docstring)."""

    window: timedelta = timedelta(hours=48)
    threshold: float = 0.6

    @classmethod
    def from_settings(cls, s: Settings) -> StoryPolicy:
        return cls(window=timedelta(hours=s.story_window_hours), threshold=s.story_similarity)


@immutable
class Signature:
    hashvalues: list[int]
    keys: list[str]  # LSH band keys, plus the title key when the title is long enough


def _shingles(tokens: list[str]) -> set[bytes]:
    tokens = tokens[:_MAX_WORDS]
    if len(tokens) < SHINGLE:
        return {" ".join(tokens).encode()} if tokens else set()
    # Shingle i is words i to i + SHINGLE - 1: zip stops at the shortest, the last full one.
    windows = zip(*(tokens[k:] for k in range(SHINGLE)), strict=False)
    return {" ".join(shingle).encode() for shingle in windows}


def _digest(data: str) -> str:
    return hashlib.blake2b(data.encode(), digest_size=12).hexdigest()


def signature(title: str, text: str) -> Signature:
    """The story signature of an article (pure: same input, same signature in every process)."""
    return signatures([(title, text)])[0]


def signatures(
    articles: Sequence[tuple[str, str]], folded: Mapping[str, str] | None = None
) -> list[Signature]:
    """:func:`signature` of each (title, text): a poll batch's flagged articles hashed together
    (``minhash_many``), the same values as one at a time.

    ``folded``: texts whose folded words (``textnorm.split_words(text).folded``) are known
    already, the rules having read them (``pipeline.match_drafts``): cutting a flagged article's
    text into words again was ~2 % of the feeds worker's ingest."""

    def words_of(text: str) -> list[str]:
        known = folded.get(text) if folded else None
        joined = split_words(text).folded if known is None else known
        return joined.split(" ") if joined else []

    titles = [words_of(title) for title, _ in articles]
    shingles = [_shingles(title + words_of(text)) for title, (_, text) in zip(titles, articles, strict=True)]
    out: list[Signature] = []
    for values, title_words in zip(minhash_many(shingles, NUM_PERM, SEED), titles, strict=True):
        keys = [f"{b}:{_digest(','.join(map(str, values[b * ROWS : (b + 1) * ROWS])))}" for b in range(BANDS)]
        if len(title_words) >= TITLE_MIN_WORDS:
            keys.append(f"{_TITLE}{_digest(' '.join(title_words))}")
        out.append(Signature(values, keys))
    return out


def similarity(a: list[int], b: list[int]) -> float:
    """Estimated Jaccard similarity of two signatures (share of equal MinHash values)."""
    if not a or len(a) != len(b):
        return 0.0
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def find_story(
    session: Session, sig: Signature, now: datetime, policy: StoryPolicy
) -> tuple[int, float] | None:
    """The earliest alert within the policy's window that ``sig`` is a copy of, with its score
    (:func:`settle` decides a whole batch this way)."""
    found = _Stories(session, [sig], now, policy).find(0, sig)
    return None if found is None else (found[1], found[2])


_BAND_TABLE = _table(StoryBand)
_BAND = _BAND_TABLE.c
_KEYS_TABLE = _table(StoryKeys)
_KEYS = _KEYS_TABLE.c
#: The table :func:`prune_keys` deletes from on PostgreSQL, whose VACUUM takes the deleted rows'
#: entries out of its GIN index (``db.upkeep(vacuum=…)``).
KEYS_TABLE: Final = _KEYS_TABLE.name
#: SQLite: the bands with these keys, one row a key (``ix_storyband_key_created``'s scan). Built
#: once: building costs more CPU than running it.
_BANDS_BY_KEY = sa_select(_BAND.key, _BAND.alert_id).where(
    store.in_list(_BAND.key, "b_keys"), _BAND.created_at >= bindparam("b_since")
)
#: PostgreSQL: for each signature of a batch (the ``n``-th of ``b_sigs``, its keys joined by commas:
#: a key is ``<band>:<hex>`` or ``t:<hex>``, never a comma), the stories of the window sharing one
#: of its keys, each with its last key (its title key when it has one). One scan of the GIN index
#: a signature, returning no keys but that one (round 59 in docs/performance-history.md):
#:
#: - one scan of all of a batch's keys (~1,600 for 77 flagged articles) cost its bitmap index scan
#:   13.6 of the statement's 14.5 ms for 642 stories (``EXPLAIN ANALYZE``), its time growing with
#:   the stories found times the keys asked for; 77 scans of 21 keys each cost 7.1 ms in all where
#:   the one scan took 22.6;
#: - the stories' 21 keys each, sent as text and read by psycopg, doubled that statement's time in
#:   the worker (39.3 ms against 25.5 without them, 1,482 stories).
#:
#: The keys reach the planner only through ``c.keys``, a column of the outer row, so no plan is
#: made with their values in hand: PostgreSQL, shown them, guesses that most stories match and
#: would read the table whole (the reason the single scan's array sat behind a sub-select).
#: ``OFFSET 0`` keeps the inner query a query of its own, run once a signature: pulled up into the
#: join, its ``&&`` became a join filter over the window's stories read once and kept in memory,
#: each compared with each signature: the plan PostgreSQL chose expecting few stories in the
#: window, 3.6 s of the backend's CPU a batch of 77 signatures in a harness run with 52,577.
_STORIES_BY_SIGNATURE = store.TextWithArrays(
    "SELECT c.n, k.alert_id, k.band_keys[array_upper(k.band_keys, 1)]"
    " FROM unnest(CAST(:b_sigs AS TEXT[])) WITH ORDINALITY AS c(keys, n)"
    f" CROSS JOIN LATERAL (SELECT alert_id, band_keys FROM {_KEYS_TABLE.name}"
    " WHERE band_keys && CAST(string_to_array(c.keys, ',') AS VARCHAR(64)[]) AND created_at >= :b_since"
    " OFFSET 0) AS k",
    "b_sigs",
)
#: Keys per candidates query on SQLite (an expanding ``IN``): a batch's flagged articles bring ~21
#: each.
_KEYS_PER_QUERY: Final = 2_000


class _Stories:
    """The stories a batch of signatures may be copies of: for each signature, the alerts of the
    window whose keys collide with its keys (PostgreSQL: one query, a scan of the GIN index
    ``ix_storykeys_band_keys`` a signature; SQLite: one query per :data:`_KEYS_PER_QUERY` keys,
    the indexed scan of ``ix_storyband_key_created``), and the stories the batch itself starts
    (:meth:`add`), which a later signature of the same batch may copy."""

    def __init__(
        self, session: Session, sigs: Sequence[Signature], now: datetime, policy: StoryPolicy
    ) -> None:
        self.threshold = policy.threshold
        since = now - policy.window
        #: Per signature, in the order given: its stored candidates, each with whether its title
        #: key collided.
        self.stored: list[dict[int, bool]] = [{} for _ in sigs]
        if session.get_bind().dialect.name == "postgresql":
            titles = [_title_key(sig) for sig in sigs]
            params = {"b_sigs": [",".join(sig.keys) for sig in sigs], "b_since": since}
            for n, alert_id, last in session.execute(_STORIES_BY_SIGNATURE, params):
                title = titles[n - 1]
                self.stored[n - 1][alert_id] = title is not None and last == title
        else:
            by_key: dict[str, list[int]] = {}
            keys = sorted({key for sig in sigs for key in sig.keys})
            for start in range(0, len(keys), _KEYS_PER_QUERY):
                params = {"b_keys": keys[start : start + _KEYS_PER_QUERY], "b_since": since}
                for key, alert_id in session.execute(_BANDS_BY_KEY, params).all():
                    by_key.setdefault(key, []).append(alert_id)
            self.stored = [_candidates(sig, by_key) for sig in sigs]
        ids = sorted({a for candidates in self.stored for a in candidates})
        self.values = dict(zip(ids, _minhashes(session, ids), strict=True))
        self.new_by_key: dict[str, list[int]] = {}
        self.new: list[np.ndarray] = []

    def find(self, index: int, sig: Signature) -> tuple[str, int, float] | None:
        """The earliest story ``sig`` (the ``index``-th signature given) is a copy of:
        ``("alert", alert id, score)`` for a stored alert, ``("new", n, score)`` for the batch's
        ``n``-th new story; else None. A candidate is a copy when enough MinHash
        values agree, or when a title key collided."""
        new = _candidates(sig, self.new_by_key)
        mine = np.asarray(sig.hashvalues, dtype=np.uint32)
        # Stored alerts first (they are older than the batch), each in id (creation) order.
        for kind, candidates, values in (("alert", self.stored[index], self.values), ("new", new, self.new)):
            for ref in sorted(candidates):
                theirs = values[ref]
                score = int(np.count_nonzero(theirs == mine)) / len(mine) if len(theirs) == len(mine) else 0.0
                if score >= self.threshold or candidates[ref]:
                    return kind, ref, score
        return None

    def add(self, sig: Signature) -> int:
        """Start a new story with ``sig``; its index among the batch's new stories."""
        index = len(self.new)
        self.new.append(np.asarray(sig.hashvalues, dtype=np.uint32))
        for key in sig.keys:
            self.new_by_key.setdefault(key, []).append(index)
        return index


def _candidates(sig: Signature, by_key: Mapping[str, Sequence[int]]) -> dict[int, bool]:
    """The stories ``by_key`` holds under any of ``sig``'s keys, each with whether its title key
    was one of them."""
    found: dict[int, bool] = {}
    for key in sig.keys:
        title = key.startswith(_TITLE)
        for ref in by_key.get(key, ()):
            found[ref] = found.get(ref, False) or title
    return found


def _title_key(sig: Signature) -> str | None:
    """The signature's title key (its last key, when the title was long enough), else None."""
    return sig.keys[-1] if sig.keys and sig.keys[-1].startswith(_TITLE) else None


@immutable
class Flagged:
    """A flagged new article for :func:`settle`."""

    article_id: int
    feed_id: int
    topics: list[str]
    sig: Signature


def settle(
    session: Session, flagged: Sequence[Flagged], now: datetime, policy: StoryPolicy
) -> list[int | None]:
    """Give each flagged article, in order, an alert of its own or a place as a copy of the
    earliest story it repeats (one stored within the window, or one an earlier article of the
    same batch starts); returns each article's new alert id, or None for a copy.

    The batch is decided in memory and written with one statement each (per chunk) for the
    candidates, the alerts, their bands and the copies: the same decisions as one article at a
    time, without four round trips per flagged article.
    """
    if not flagged:
        return []
    known = _Stories(session, [f.sig for f in flagged], now, policy)
    found: list[tuple[str, int, float] | None] = []
    for index, f in enumerate(flagged):
        story = known.find(index, f.sig)
        if story is None:
            known.add(f.sig)  # later articles of the batch may copy it
        found.append(story)
    starts = [f for f, story in zip(flagged, found, strict=True) if story is None]
    created = store.create_alerts(session, [(f.article_id, f.topics, f.sig.hashvalues) for f in starts], now)
    # The batch's new stories in the order they were started: ``("new", index)`` names one.
    new_alerts = [created.get(f.article_id) for f in starts]
    record_keys(
        session,
        [(alert_id, f.sig) for f, alert_id in zip(starts, new_alerts, strict=True) if alert_id is not None],
        now,
    )
    copies: list[dict[str, Any]] = []
    result: list[int | None] = []
    for f, story in zip(flagged, found, strict=True):
        if story is None:
            result.append(created.get(f.article_id))
            continue
        result.append(None)
        kind, ref, score = story
        alert_id = ref if kind == "alert" else new_alerts[ref]
        if alert_id is None:  # its alert existed already (not for an article this batch stored)
            log.warning("alert.story_without_alert", article_id=f.article_id)
            continue
        copies.append(
            {
                "alert_id": alert_id,
                "article_id": f.article_id,
                "feed_id": f.feed_id,
                "similarity": score,
                "created_at": now,
            }
        )
        log.info("alert.story_copy", alert_id=alert_id, article_id=f.article_id, similarity=score)
    store.insert_many(session, _insert_copies, copies)
    return result


def record_keys(session: Session, stories: Sequence[tuple[int, Signature]], now: datetime) -> None:
    """Store each new story's keys (alert id, signature): one ``StoryKeys`` row a story (on
    PostgreSQL by one ``COPY``, ``store.copy_rows``), and on SQLite one ``StoryBand`` row a key as
    well (its index of them)."""
    values = [(alert_id, sig.keys, now) for alert_id, sig in stories]
    if store.copy_rows(session, StoryKeys, _KEY_COLUMNS, values, len(values)) is not None:
        return
    store.insert_values(session, _insert_keys, _KEY_COLUMNS, values)
    if session.get_bind().dialect.name != "postgresql":
        store.insert_many(
            session,
            _insert_bands,
            [
                {"alert_id": alert_id, "key": key, "created_at": now}
                for alert_id, sig in stories
                for key in sig.keys
            ],
        )


_KEY_COLUMNS: Final = ("alert_id", "band_keys", "created_at")

#: How long past the story window a story's keys are kept (:func:`prune_keys`): a batch whose
#: clock reads a little behind the pruner's still finds every story of its own window.
PRUNE_MARGIN: Final = timedelta(hours=1)


def prune_keys(session: Session, now: datetime, policy: StoryPolicy) -> int:
    """Delete the keys of the stories that left the window (``policy.window`` and
    :data:`PRUNE_MARGIN` before ``now``); returns how many stories' keys went. The stories'
    alerts and copies stay: only the lookup reads keys, and it never returns such a story.

    On PostgreSQL it still paid for them: the GIN index on ``band_keys`` hands out every story
    that ever shared a key with the batch's, and each is read from the heap to be dropped by the
    window's condition on ``created_at``, so a lookup's cost grew with every story the
    deployment had ever stored (round 49 in docs/performance-history.md). SQLite's band rows
    are read through ``(key, created_at)`` and never were; they go as well, as the same keys,
    so neither table grows without bound on either database. Run by the worker's ``db_upkeep``
    task, on both; the index entries of deleted rows go at the next
    VACUUM (autovacuum's, or ``db.upkeep``'s where it is off).

    No index has ``created_at`` first, so each run reads the tables whole: with 20,000 stories in
    the window and nothing to delete, 6.2 ms on PostgreSQL and 51 ms on SQLite (its 400,000 band
    rows), once a minute; an index would be written with every story instead (round 50)."""
    cutoff = now - policy.window - PRUNE_MARGIN
    connection = session.connection()
    pruned = connection.execute(sa_delete(_KEYS_TABLE).where(_KEYS.created_at < cutoff)).rowcount
    if connection.dialect.name != "postgresql":
        connection.execute(sa_delete(_BAND_TABLE).where(_BAND.created_at < cutoff))
    return int(pruned)


#: Per database (engine): alert id → its MinHash values, the most recently used kept.
_MEMO: weakref.WeakKeyDictionary[Engine, OrderedDict[int, np.ndarray]] = weakref.WeakKeyDictionary()
_MEMO_SIZE: Final = 20_000  # ~9 MB: 60 uint32 values an alert, with the arrays and the memo (round 55)


_MINHASHES = sa_select(_table(Alert).c.id, _table(Alert).c.minhash).where(store.in_list(_table(Alert).c.id))


def _minhashes(session: Session, alert_ids: list[int]) -> list[np.ndarray]:
    """The alerts' MinHash values, remembered per database. Only on PostgreSQL, whose sequences
    never hand out an id twice; SQLite reuses the highest rowid after a rollback, so an id read in
    a batch that was then rolled back could name another alert later."""
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    memo = _MEMO.setdefault(engine, OrderedDict()) if engine.dialect.name == "postgresql" else OrderedDict()
    missing = [a for a in alert_ids if a not in memo]
    if missing:
        rows = session.execute(_MINHASHES, {"b_ids": missing})
        for alert_id, values in rows:
            memo[alert_id] = np.asarray(values or [], dtype=np.uint32)
    found = []
    for alert_id in alert_ids:
        memo.move_to_end(alert_id)
        found.append(memo[alert_id])
    while len(memo) > _MEMO_SIZE:
        memo.popitem(last=False)
    return found


# Core inserts (``store.insert_many``), not ``session.add``: the rows are visible to the
# transaction's next query without a flush (a flush would also write every dirty feed row of a
# poll batch early).
def _insert_keys(insert: Any) -> Any:
    return insert(_table(StoryKeys))


def _insert_bands(insert: Any) -> Any:
    return insert(_BAND_TABLE)


def _insert_copies(insert: Any) -> Any:
    return insert(_table(StoryCopy))


@immutable
class CopyInfo:
    outlet: str
    title: str
    url: str | None
    published_at: datetime


def also_reported_many(session: Session, alert_ids: Sequence[int]) -> dict[int, list[CopyInfo]]:
    """Per alert, the other outlets that carried its story, in the order they were seen: one
    query for all the alerts; alerts without copies are left out."""
    stmt = (
        sa_select(
            col(StoryCopy.alert_id),
            col(Feed.name),
            col(Feed.url),
            col(Article.title),
            col(Article.url),
            col(Article.published_at),
        )
        .select_from(StoryCopy)
        .join(Article, col(Article.id) == col(StoryCopy.article_id))
        .join(Feed, col(Feed.id) == col(StoryCopy.feed_id))
        .where(col(StoryCopy.alert_id).in_(list(alert_ids)))
        .order_by(col(StoryCopy.id))
    )
    copies: dict[int, list[CopyInfo]] = {}
    for alert_id, name, feed_url, title, url, published in session.execute(stmt).all():
        copies.setdefault(alert_id, []).append(
            CopyInfo(outlet=name or feed_url, title=title, url=url, published_at=published)
        )
    return copies
