"""Near-duplicate stories: one alert per story, however many outlets syndicate it.

A flagged article either starts a story (it gets an alert) or joins the alert of a story seen in
the last ``story_window_hours`` as a *copy* ("also reported by"), which never alerts again, even
when the first alert was delivered long ago. The lookup lives in the database, so it holds across
worker processes, hosts and restarts.

Signature: a MinHash (``feedwatch.minhash``: datasketch's values without scipy; ``NUM_PERM``
permutations, fixed seed so every process computes the same one) of the word 3-shingles of the
folded title and text. Candidates come from LSH bands:
``BANDS`` bands of ``ROWS`` rows, each band's values hashed into an indexed ``StoryBand.key``.
Two texts whose shingle sets have Jaccard similarity *s* share a band with probability
``1 - (1 - s**ROWS)**BANDS``: 0.42 at s=0.3, 0.99 at s=0.6, 1.0 above. A candidate is accepted
when the estimated similarity reaches ``story_similarity`` (0.6 by default).

A second key catches what shingles miss: the same headline (folded, at least ``TITLE_MIN_WORDS``
words) within the window is the same story even when one outlet carries only a teaser.

Known limit: two workers storing copies of one new story at the same instant, in two open
transactions, cannot see each other's bands and may both alert. Feeds of one poll batch are
stored one after another, so this needs two batches committing within milliseconds.
"""

from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

import numpy as np
from sqlalchemy import bindparam, case, func
from sqlalchemy import insert as sa_insert
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from feedwatch.minhash import minhash
from feedwatch.models import Alert, Article, Feed, StoryBand, StoryCopy
from feedwatch.store import _table
from feedwatch.textnorm import words

if TYPE_CHECKING:
    from feedwatch.settings import Settings

NUM_PERM: Final = 60
BANDS: Final = 20
ROWS: Final = NUM_PERM // BANDS
SEED: Final = 20240501
SHINGLE: Final = 3
TITLE_MIN_WORDS: Final = 6
_MAX_WORDS: Final = 3000  # syndication shows in the opening; bounds the hashing cost


@dataclass(frozen=True)
class StoryPolicy:
    """When a flagged article is a copy of an earlier story (see the module docstring)."""

    window: timedelta = timedelta(hours=48)
    threshold: float = 0.6

    @classmethod
    def from_settings(cls, s: Settings) -> StoryPolicy:
        return cls(window=timedelta(hours=s.story_window_hours), threshold=s.story_similarity)


@dataclass(frozen=True)
class Signature:
    hashvalues: list[int]
    keys: list[str]  # LSH band keys, plus the title key when the title is long enough


def _shingles(title: str, text: str) -> set[bytes]:
    tokens = (words(title) + words(text))[:_MAX_WORDS]
    if len(tokens) < SHINGLE:
        return {" ".join(tokens).encode()} if tokens else set()
    return {" ".join(tokens[i : i + SHINGLE]).encode() for i in range(len(tokens) - SHINGLE + 1)}


def _digest(data: str) -> str:
    return hashlib.blake2b(data.encode(), digest_size=12).hexdigest()


def signature(title: str, text: str) -> Signature:
    """The story signature of an article (pure: same input, same signature in every process)."""
    values = minhash(_shingles(title, text), NUM_PERM, SEED)
    keys = [f"{b}:{_digest(','.join(map(str, values[b * ROWS : (b + 1) * ROWS])))}" for b in range(BANDS)]
    title_words = words(title)
    if len(title_words) >= TITLE_MIN_WORDS:
        keys.append(f"t:{_digest(' '.join(title_words))}")
    return Signature(values, keys)


def similarity(a: list[int], b: list[int]) -> float:
    """Estimated Jaccard similarity of two signatures (share of equal MinHash values)."""
    if not a or len(a) != len(b):
        return 0.0
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def find_story(
    session: Session, sig: Signature, now: datetime, policy: StoryPolicy
) -> tuple[int, float] | None:
    """The earliest alert within the policy's window that ``sig`` is a copy of, with its score.

    One query per article for the candidates: the alerts whose bands collide with this
    signature's within the window (``ix_storyband_key_created`` bounds the scan), grouped per
    alert. Their MinHash values come from a per-process memo (an alert's signature never
    changes, and alerts are never deleted); only alerts this process has not seen are read.
    Candidates grow with the stored alerts whose bands collide: the memo keeps the database from
    sending every candidate's 60 values with every lookup, and the comparison is one numpy step.
    """
    candidates = session.execute(_CANDIDATES, {"b_keys": sig.keys, "b_since": now - policy.window}).all()
    if not candidates:
        return None
    values = _minhashes(session, [alert_id for alert_id, _ in candidates])
    mine = np.asarray(sig.hashvalues, dtype=np.uint32)
    for (alert_id, by_title), theirs in zip(candidates, values, strict=True):
        score = int(np.count_nonzero(theirs == mine)) / len(mine) if len(theirs) == len(mine) else 0.0
        if score >= policy.threshold or by_title:
            return alert_id, score
    return None


_BAND = _table(StoryBand).c
# Built once (building costs more CPU than running it): alerts whose bands collide, and whether
# a title band did.
_CANDIDATES = (
    sa_select(_BAND.alert_id, func.max(case((_BAND.key.startswith("t:"), 1), else_=0)))
    .where(_BAND.key.in_(bindparam("b_keys", expanding=True)), _BAND.created_at >= bindparam("b_since"))
    .group_by(_BAND.alert_id)
    .order_by(_BAND.alert_id)
)

#: Per database (engine): alert id → its MinHash values, the most recently used kept.
_MEMO: weakref.WeakKeyDictionary[Engine, OrderedDict[int, np.ndarray]] = weakref.WeakKeyDictionary()
_MEMO_SIZE: Final = 20_000  # ~7 MB of uint32 signatures


def _minhashes(session: Session, alert_ids: list[int]) -> list[np.ndarray]:
    """The alerts' MinHash values, remembered per database. Only on PostgreSQL, whose sequences
    never hand out an id twice; SQLite reuses the highest rowid after a rollback, so an id read in
    a batch that was then rolled back could name another alert later."""
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    memo = _MEMO.setdefault(engine, OrderedDict()) if engine.dialect.name == "postgresql" else OrderedDict()
    missing = [a for a in alert_ids if a not in memo]
    if missing:
        rows = session.execute(sa_select(col(Alert.id), col(Alert.minhash)).where(col(Alert.id).in_(missing)))
        for alert_id, values in rows:
            memo[alert_id] = np.asarray(values or [], dtype=np.uint32)
    found = []
    for alert_id in alert_ids:
        memo.move_to_end(alert_id)
        found.append(memo[alert_id])
    while len(memo) > _MEMO_SIZE:
        memo.popitem(last=False)
    return found


_INSERT_BANDS = sa_insert(_table(StoryBand))
_INSERT_COPY = sa_insert(_table(StoryCopy))


def record_story(session: Session, alert_id: int, sig: Signature, now: datetime) -> None:
    """Index a new story's bands so later copies find its alert.

    A Core statement, not ``session.add``: the rows are visible to the next ``find_story`` of
    the same transaction without a flush (a flush would also write every dirty feed row of a
    poll batch early, one small UPDATE batch per alert)."""
    rows = [{"alert_id": alert_id, "key": key, "created_at": now} for key in sig.keys]
    session.connection().execute(_INSERT_BANDS, rows)


def add_copy(
    session: Session, alert_id: int, article_id: int, feed_id: int, score: float, now: datetime
) -> None:
    row = {"alert_id": alert_id, "article_id": article_id, "feed_id": feed_id, "similarity": score}
    session.connection().execute(_INSERT_COPY, [{**row, "created_at": now}])


@dataclass(frozen=True)
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
