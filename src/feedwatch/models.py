"""Database records. All datetimes are aware UTC (``timeutil.utcnow()``), on every backend.

Feed       a source and its runtime state (validators, schedule, errors, redirects)
Article    one story, identified by ``identity_key`` across all feeds (+ its full text, if fetched)
Sighting   (article, feed): the same story seen in another feed is a sighting, not a new article
Match      (article, topic): why an article was flagged (score, terms, snippet)
Alert      the outbox row for a flagged article: one per article, listing its topics
Delivery   (alert, channel): makes delivery idempotent per channel
StoryKeys  an alert's LSH band keys (of its MinHash) in one row: finds the alert a syndicated copy
           belongs to (PostgreSQL: through a GIN index on the array)
StoryBand  the same keys one row each, SQLite's index of them (SQLite has no inverted index)
StoryCopy  (alert, article): the same story from another outlet, "also reported by"
Digest     one digest or burst summary per (channel, period, kind), claimed like a delivery
DigestItem (channel, alert): an alert held for a digest; in exactly one digest per channel
Heartbeat  liveness stamps written by beat ticks and workers
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import JSON, Column, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from feedwatch.timeutil import utcnow
from feedwatch.urls import DEFAULT_PORTS

#: A hash written as text (hex digits, a prefix): compared byte by byte on PostgreSQL. The
#: database's collation (C.UTF-8, en_US.UTF-8: the locale's rules through strcoll) orders such
#: keys no better and cost ~1.5 µs more per index insert and per lookup of an article's identity
#: or a story band (migration 0007; docs/performance-history.md, round 13).
HASH_KEY = String(64).with_variant(String(64, collation="C"), "postgresql")


def declared_on(item: Any, dialect: str) -> bool:
    """Whether the models make ``item`` (an index) on this dialect: an index declared with
    ``ddl_if(dialect=...)`` exists on that dialect only. Alembic's schema comparison does not
    read ``ddl_if`` (the migrations' ``include_object`` asks this)."""
    condition = getattr(item, "_ddl_if", None)
    return condition is None or condition.dialect in (None, dialect)


def origin_of(url: str) -> str | None:
    """The origin a feed's URL is fetched from: ``scheme://host``, with ``:port`` when it is not
    the scheme's default; host and scheme in lower case. A kept connection carries requests of
    one origin only, so the tick polls an origin's feeds together (``Feed.origin``,
    docs/polling.md). None for a URL without a host or with a bad port."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or not parts.scheme:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == DEFAULT_PORTS.get(parts.scheme):
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


# SQLite uses a partial index only for a query that has its predicate as a term, and SQLAlchemy
# writes a true boolean column there as ``in_rounds = 1``.
_IN_ROUNDS = sql("in_rounds")
_IN_ROUNDS_SQLITE = sql("in_rounds = 1")


class FeedState:
    NEW = "new"
    OK = "ok"
    NOT_MODIFIED = "not_modified"
    BACKING_OFF = "backing_off"
    FAILING = "failing"
    DISABLED = "disabled"
    ALL = (NEW, OK, NOT_MODIFIED, BACKING_OFF, FAILING, DISABLED)


class AlertStatus:
    PENDING = "pending"  # committed, no message published yet (or publish failed)
    QUEUED = "queued"  # a deliver_alert message was published
    DELIVERED = "delivered"  # every configured channel has a sent Delivery
    FAILED = "failed"  # a channel dead-lettered it; `feedwatch alerts retry` replays
    ALL = (PENDING, QUEUED, DELIVERED, FAILED)


class FullTextStatus:
    """The full-text stage of an article (``feedwatch.extract``; docs/full-text.md)."""

    PENDING = "pending"  # a candidate: a fetch_article message was (or will be) sent
    OK = "ok"  # extracted; rules ran again on the full text
    FAILED = "failed"  # fetch or extraction failed; ``full_text_error`` holds the class
    ALL = (PENDING, OK, FAILED)


class DeliveryStatus:
    PENDING = "pending"  # not attempted yet
    SENDING = "sending"  # claimed by a worker until claimed_at + lease
    SENT = "sent"
    RETRYING = "retrying"  # failed, will be retried
    DEAD = "dead"  # dead-lettered after the last attempt; `feedwatch alerts retry` replays
    HELD = "held"  # waiting in a digest or a burst summary (DigestItem); sent with it
    ALL = (PENDING, SENDING, SENT, RETRYING, DEAD, HELD)


class Feed(SQLModel, table=True):
    # A tick finds the feeds of an origin that fall due soon by this (migration 0012). Partial:
    # only feeds in rounds are in it, so a poll of any other feed writes no entry (every update
    # of a feed row is one, ~2 µs of PostgreSQL; round 43 in docs/performance-history.md).
    __table_args__ = (
        Index(
            "ix_feed_rounds",
            "origin",
            "next_check_at",
            postgresql_where=_IN_ROUNDS,
            sqlite_where=_IN_ROUNDS_SQLITE,
        ),
        # Half of each page left free (migration 0014): a poll's two new versions of the row (the
        # claim, the state; neither heap-only) find room on its page, and the page's next read
        # prunes the dead ones, so the heap keeps its size even where VACUUM does not run.
        {"postgresql_with": {"fillfactor": 50}},
    )
    id: int | None = Field(default=None, primary_key=True)
    config_url: str = Field(sa_column=Column(Text, unique=True, nullable=False))
    url: str = Field(sa_column=Column(Text, nullable=False))
    # ``origin_of(url)``: set with ``url`` by every writer of it (the feed sync, a redirect's
    # adoption). None when the URL has none: such a feed is polled on its own schedule alone.
    origin: str | None = Field(default=None, sa_column=Column(Text))
    # Whether the tick may poll this feed in its origin's rounds: enabled, and sharing its origin
    # with between 1 and ``store.ROUND_ORIGIN_MOST`` - 1 other enabled feeds (``store.mark_rounds``,
    # run by every sync of the configuration).
    in_rounds: bool = False
    name: str = ""
    language: str | None = None
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    interval_minutes: float = 10.0
    min_interval_minutes: float | None = None
    max_interval_minutes: float | None = None
    full_text: bool = False
    enabled: bool = True

    state: str = FeedState.NEW  # not indexed: see migration 0004
    next_check_at: datetime = Field(default_factory=utcnow, index=True)
    next_check_reason: str = "new feed"
    claimed_at: datetime | None = None
    # Claims whose poll never reported back (a crash, a kill, a lost message). A feed that
    # keeps killing its poll is failed as ``crash`` instead of being retried forever.
    unreported_claims: int = 0

    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    # The size of the last body a 200 brought (bytes, after decoding): the tick sizes poll
    # batches by it (``Settings.poll_batch_bytes``). None until the feed's first 200.
    body_bytes: int | None = None

    last_polled_at: datetime | None = None
    last_ok_at: datetime | None = None
    last_status: int | None = None
    last_entries: int = 0
    last_new: int = 0
    last_duration_ms: int | None = None

    error_class: str | None = None
    error_message: str | None = None
    error_count: int = 0
    total_errors: int = 0
    last_error_at: datetime | None = None

    redirect_candidate: str | None = None
    redirect_count: int = 0
    redirect_history: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    poll_history: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Conditional polls since validators were last dropped: some servers' ETags lie.
    conditional_polls: int = 0
    last_unconditional_at: datetime | None = None

    # WebSub (feedwatch.websub): the hub a feed advertises and our subscription to it.
    websub_hub: str | None = Field(default=None, sa_column=Column(Text))
    websub_topic: str | None = Field(default=None, sa_column=Column(Text))
    websub_secret: str | None = None
    websub_state: str | None = None  # requested | subscribed | denied | unsubscribed
    websub_requested_at: datetime | None = None
    websub_lease_until: datetime | None = None
    websub_last_push_at: datetime | None = None

    # 8-byte fingerprints of the entries the last successful parse showed, all stored by then
    # (feedwatch.known): the next parse skips their text work and their database lookup.
    entry_fingerprints: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    # The byte spans of those entries' items, with their fingerprints and dates (feedwatch.splice):
    # the next parse of a changed body parses only the items it does not find here.
    item_spans: bytes | None = Field(default=None, sa_column=Column(LargeBinary))

    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


_HAS_FULL_TEXT_STATUS = sql("full_text_status IS NOT NULL")


class Article(SQLModel, table=True):
    __table_args__ = (
        # Partial: only full-text candidates are in it (NULL is "never a candidate", most rows),
        # so storing an ordinary article does not touch it. Every query of it names a status;
        # with the time a candidate finished, status counts a day's failures without reading
        # every failed candidate ever stored (migration 0015).
        Index(
            "ix_article_full_text_status",
            "full_text_status",
            "extracted_at",
            postgresql_where=_HAS_FULL_TEXT_STATUS,
            sqlite_where=_HAS_FULL_TEXT_STATUS,
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    identity_key: str = Field(sa_type=HASH_KEY, unique=True)
    feed_id: int = Field(foreign_key="feed.id", index=True)
    guid: str | None = Field(default=None, sa_column=Column(Text))
    url: str | None = Field(default=None, sa_column=Column(Text))
    title: str = Field(default="", sa_column=Column(Text, nullable=False))
    # The feed's teaser when the text is something else (the entry's content); empty when the
    # teaser is the text, so that it is not stored twice (since round 25; rows written before
    # hold the copy). A reader that wants a teaser takes ``summary or text``.
    summary: str = Field(default="", sa_column=Column(Text, nullable=False))
    text: str = Field(default="", sa_column=Column(Text, nullable=False))
    author: str | None = None
    language: str | None = None
    published_at: datetime  # not indexed: no query filters or sorts by it (migration 0008)
    published_from_feed: bool = True
    fetched_at: datetime = Field(default_factory=utcnow, index=True)
    content_hash: str = Field(max_length=64)
    flagged: bool = Field(default=False)
    # Full-text stage: None when the article was never a candidate (see FullTextStatus).
    full_text: str | None = Field(default=None, sa_column=Column(Text))
    full_text_status: str | None = None
    full_text_error: str | None = None  # a fetch error class, not_html, empty, crash
    full_text_requested_at: datetime | None = None  # last (re)queue; the tick re-sends lost ones
    full_text_attempts: int = 0
    extracted_at: datetime | None = None


class Sighting(SQLModel, table=True):
    # A feed other than the one that stored the article (``Article.feed_id``) showed it. Rows
    # written before round 10 (docs/performance-history.md) also record the storing feed; readers take
    # either (``store.stored_keys``).
    # The unique constraint's index serves lookups by article_id (its leading column).
    __table_args__ = (UniqueConstraint("article_id", "feed_id", name="uq_sighting_article_feed"),)
    id: int | None = Field(default=None, primary_key=True)
    article_id: int = Field(foreign_key="article.id")
    feed_id: int = Field(foreign_key="feed.id", index=True)
    seen_at: datetime = Field(default_factory=utcnow)


class Match(SQLModel, table=True):
    # The unique constraint's index serves lookups by article_id (its leading column).
    __table_args__ = (UniqueConstraint("article_id", "topic", name="uq_match_article_topic"),)
    id: int | None = Field(default=None, primary_key=True)
    article_id: int = Field(foreign_key="article.id")
    topic: str = Field(index=True)
    score: float
    terms: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    snippet: str = Field(default="", sa_column=Column(Text, nullable=False))
    explanation: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    stage: str = "feed"  # "feed" (title + teaser) or "full_text"
    created_at: datetime = Field(default_factory=utcnow, index=True)


class Alert(SQLModel, table=True):
    __table_args__ = (Index("ix_alert_status_created", "status", "created_at"),)
    id: int | None = Field(default=None, primary_key=True)
    article_id: int = Field(foreign_key="article.id", unique=True)
    topics: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=AlertStatus.PENDING)
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow)
    queued_at: datetime | None = None
    delivered_at: datetime | None = None
    # MinHash of the story's text (feedwatch.stories): verifies an LSH candidate across processes.
    minhash: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class Delivery(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("alert_id", "channel", name="uq_delivery_alert_channel"),
        # Rate-limit window counts (the last minute of claimed_at). On claimed_at alone: every
        # other statement names its rows by alert_id and channel, and must not be served by this
        # index; with channel in it, a generic plan could take ``channel = …`` as its condition and
        # read the whole index on every call (migrations 0006 and 0013).
        Index("ix_delivery_claimed_at", "claimed_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    alert_id: int = Field(foreign_key="alert.id", index=True)
    channel: str
    status: str = DeliveryStatus.PENDING
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow)
    claimed_at: datetime | None = None
    sent_at: datetime | None = None
    # Per (alert, channel) backoff: a retrying row is not claimed before this.
    next_attempt_at: datetime | None = None


class StoryKeys(SQLModel, table=True):
    """A story's band keys (``feedwatch.stories``), written with its alert. On PostgreSQL an array
    of hash keys under a GIN index (``band_keys && <a signature's keys>``, one scan a signature,
    finds the alerts sharing a key: ``stories._STORIES_BY_SIGNATURE``): one row an alert where
    :class:`StoryBand` took 21, for about a quarter of the database CPU those took (migration
    0011). A story's title key, when it has one, is its last. On SQLite a JSON list that the
    service does not search (:class:`StoryBand` serves the lookups there), kept so that a
    story's keys are one row on both databases."""

    __table_args__ = (
        Index(
            "ix_storykeys_band_keys",
            "band_keys",
            postgresql_using="gin",
            postgresql_with={"fastupdate": "off"},
        ).ddl_if(dialect="postgresql"),
    )
    alert_id: int = Field(
        sa_column=Column(Integer, ForeignKey("alert.id"), primary_key=True, autoincrement=False)
    )
    band_keys: list[str] = Field(
        sa_column=Column(JSON().with_variant(ARRAY(HASH_KEY), "postgresql"), nullable=False)
    )
    created_at: datetime = Field(default_factory=utcnow)


class StoryBand(SQLModel, table=True):
    """One band key of a story a row: SQLite's index of :class:`StoryKeys` (its B-tree on
    ``(key, created_at)`` finds the alerts sharing a key). Not written on PostgreSQL since
    migration 0011, whose GIN index on ``storykeys.band_keys`` does this."""

    __table_args__ = (Index("ix_storyband_key_created", "key", "created_at"),)
    id: int | None = Field(default=None, primary_key=True)
    alert_id: int = Field(foreign_key="alert.id", index=True)
    key: str = Field(sa_type=HASH_KEY)  # "<band>:<hash of the band's rows>" or "t:<title hash>"
    created_at: datetime = Field(default_factory=utcnow)


class StoryCopy(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    alert_id: int = Field(foreign_key="alert.id", index=True)
    article_id: int = Field(foreign_key="article.id", unique=True)
    feed_id: int = Field(foreign_key="feed.id")
    similarity: float
    created_at: datetime = Field(default_factory=utcnow)


class Digest(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("channel", "kind", "period_start", name="uq_digest_period"),)
    id: int | None = Field(default=None, primary_key=True)
    channel: str
    kind: str  # "digest" (scheduled) or "burst" (rate-limit summary)
    period_start: datetime
    created_at: datetime = Field(default_factory=utcnow)
    claimed_at: datetime | None = None
    sent_at: datetime | None = None
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text))


class DigestItem(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("channel", "alert_id", name="uq_digestitem_channel_alert"),)
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(index=True)
    alert_id: int = Field(foreign_key="alert.id", index=True)
    kind: str  # "digest" or "burst"
    digest_id: int | None = Field(default=None, foreign_key="digest.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)


class Heartbeat(SQLModel, table=True):
    name: str = Field(primary_key=True)
    at: datetime = Field(default_factory=utcnow)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
