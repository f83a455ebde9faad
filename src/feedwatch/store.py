"""Storage: every database write the pipeline makes, idempotent by construction.

Unique keys and ``ON CONFLICT DO NOTHING`` make every write safe to repeat, which is what lets
Celery redeliver any message (``acks_late``) without duplicating articles, matches or alerts.
The functions take an open session and never commit: the caller owns the transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from functools import cache, partial
from itertools import groupby
from operator import itemgetter
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar
from weakref import WeakKeyDictionary

import structlog
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ColumnElement,
    DateTime,
    Integer,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    column,
    func,
    literal_column,
    type_coerce,
    update,
)
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import Grouping, TextClause
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import LargeBinary, TypeDecorator
from sqlmodel import Session, col, select
from sqlmodel.sql.sqltypes import UTCDateTime

from feedwatch.db import json_dumps
from feedwatch.immutable import immutable
from feedwatch.models import (
    Alert,
    AlertStatus,
    Article,
    Feed,
    FeedState,
    FullTextStatus,
    Heartbeat,
    Match,
    Sighting,
    origin_of,
)
from feedwatch.timeutil import to_utc

log = structlog.get_logger(__name__)

if TYPE_CHECKING:
    from feedwatch.normalize import ArticleDraft
    from feedwatch.rules import TopicMatch
    from feedwatch.sources import FeedSpec


def _dialect_insert(session: Session) -> Callable[[Any], Any]:
    """This session's dialect's ``insert()``: the one with ``on_conflict_do_*``."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _insert(session: Session, table: Any) -> Any:
    """An INSERT that supports ``on_conflict_do_nothing`` on this session's dialect."""
    return _dialect_insert(session)(table)


def _table(model: Any) -> Any:
    return model.__table__


_BUILT: dict[tuple[Any, ...], Any] = {}


def prepared(session: Session, build: Callable[[Callable[[Any], Any]], Any]) -> Any:
    """``build(insert)`` once per dialect, ``insert`` being the dialect's ``insert()`` (the one with
    ``on_conflict_do_*``). Building a statement costs SQLAlchemy more CPU than running it (a
    one-row SELECT: ~0.3 ms to build and run, a third of that when built once)."""
    key = (session.get_bind().dialect.name, build)
    stmt = _BUILT.get(key)
    if stmt is None:
        stmt = _BUILT[key] = build(_dialect_insert(session))
    return stmt


class InList(ColumnElement[bool]):
    """``column IN (the list given at execution as parameter name)``, with one placeholder.

    SQLAlchemy renders an expanding ``IN`` as one placeholder per element at every execution,
    and psycopg turns each into ``$n`` in Python on every statement (it caches no statement over
    4 KB or 50 parameters): 2.5 ms a call for a seen-items lookup of 500 keys. On PostgreSQL
    this is ``column = ANY(%(name)b)`` with the list bound as one array in psycopg's binary
    format, so the statement's text is the same whatever the list's length; elsewhere (SQLite)
    it stays an expanding ``IN``.
    Used where a list can be long (a batch's keys or ids); end to end the gain was within the
    noise (round 9 in docs/performance-history.md)."""

    type = Boolean()
    _is_implicitly_boolean = True  # a comparison: no ``= 1`` after it where booleans are integers
    _traverse_internals = [  # noqa: RUF012  (as SQLAlchemy declares it)
        ("column", InternalTraversal.dp_clauseelement),
        ("name", InternalTraversal.dp_string),
    ]

    def __init__(self, column: Any, name: str) -> None:
        self.column = column
        self.name = name


@compiles(InList)
def _in_expanding(element: InList, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.column.in_(bindparam(element.name, expanding=True)), **kw))


@compiles(InList, "postgresql")
def _in_array(element: InList, compiler: Any, **kw: Any) -> str:
    array = ArrayParameter(element.name, postgresql.ARRAY(element.column.type))
    return str(compiler.process(element.column == any_(array), **kw))


class ArrayParameter(ColumnElement[Any]):
    """The bind parameter ``name`` of an array type, bound in psycopg's binary format on
    PostgreSQL (:func:`_binary`): :class:`InList`'s list, a batch's poll histories
    (:func:`update_feeds`). Elsewhere a plain bind parameter."""

    inherit_cache = True
    _traverse_internals = [  # noqa: RUF012  (as SQLAlchemy declares it)
        ("name", InternalTraversal.dp_string),
        ("type", InternalTraversal.dp_type),
    ]

    def __init__(self, name: str, type_: Any) -> None:
        self.name = name
        self.type = type_


@compiles(ArrayParameter)
def _array_parameter(element: ArrayParameter, compiler: Any, **kw: Any) -> str:
    sql = str(compiler.process(bindparam(element.name, type_=element.type), **kw))
    return _binary(sql, element.name, compiler) if compiler.dialect.name == "postgresql" else sql


def _binary(sql: str, name: str, compiler: Any) -> str:
    """``sql`` with the array parameter ``name`` bound in psycopg's binary format: its text format
    quotes and escapes every element in Python, 1.5-2 µs each (5,000 keys: 7-10 ms against
    1.5-1.8 binary); an ingest batch looks up ~15,000 keys (round 20). The cast SQLAlchemy
    renders after it stays. A statement rendered with its values inline (``literal_binds``) has
    no placeholder to change."""
    if compiler.dialect.driver != "psycopg":
        return sql  # ``%(name)b`` is psycopg 3's placeholder; other drivers bind as they do
    return sql.replace(f"%({name})s", f"%({name})b")


class TextWithArrays(TextClause):
    """``text(sql)`` whose array parameters ``arrays`` go in psycopg's binary format
    (:func:`_binary`), as :class:`InList` binds its list: for a statement whose SQL is clearer
    written out than built (the story lookup's lateral query). Dumped as text, a batch's 77
    signatures of ~560 characters cost psycopg 428 µs a call, in binary 19.5 (round 59)."""

    inherit_cache = True
    _traverse_internals = [  # noqa: RUF012  (as SQLAlchemy declares it)
        *TextClause._traverse_internals,
        ("arrays", InternalTraversal.dp_string_list),
    ]

    def __init__(self, sql: str, *arrays: str) -> None:
        super().__init__(sql)
        self.arrays = list(arrays)


@compiles(TextWithArrays, "postgresql")
def _text_with_arrays(element: TextWithArrays, compiler: Any, **kw: Any) -> str:
    sql = str(compiler.visit_textclause(element, **kw))
    for name in element.arrays:
        sql = _binary(sql, name, compiler)
    return sql


def in_list(column: Any, name: str = "b_ids") -> InList:
    """``column IN`` the list given at execution as ``name`` (:class:`InList`)."""
    return InList(column, name)


def insert_many(
    session: Session, build: Callable[[Callable[[Any], Any]], Any], rows: Sequence[dict[str, Any]]
) -> list[Any]:
    """Run the INSERT ``build(insert)`` over ``rows`` (dicts with the same keys) on the session's
    connection (its transaction), :data:`INSERT_CHUNK` rows a statement, in the order given;
    the rows its ``RETURNING`` gives back, if any.

    On PostgreSQL a chunk is ONE JSON parameter that the statement reads back as rows
    (``INSERT … SELECT … FROM json_to_recordset(%(rows)s::JSON) AS r(column type, …)``,
    :class:`_JsonInsert`). Its text is the same for every chunk, so psycopg converts its
    placeholders once. An ``INSERT … VALUES`` of 200 rows of 15 columns has 3,000 of them, which
    psycopg turned into ``$n`` in Python on every statement (it caches no statement that long):
    15 % of a feeds worker's samples during ingest. The client's CPU per article row fell from
    ~0.05 to ~0.003 ms; PostgreSQL's stayed ~0.025 ms (round 8 in docs/performance-history.md). The
    engine's JSON serializer (orjson) writes the rows; a column of type JSON takes its value
    as it is nested there.

    On SQLite: SQLAlchemy's "insertmanyvalues" with one compiled statement (an
    ``INSERT … VALUES (…), (…)`` built with ``.values(rows)`` is compiled afresh for every call,
    which cost more CPU than the database spent storing the rows).
    """
    if not rows:
        return []
    names = tuple(rows[0])
    dialect = session.get_bind().dialect.name
    key = (dialect, build, names)
    built = _BUILT.get(key)
    if built is None:
        postgres = dialect == "postgresql"
        built = _BUILT[key] = _JsonInsert.build(build, names) if postgres else build(sqlite.insert)
    connection = session.connection()
    back: list[Any] = []
    columns = set(names)
    for chunk in chunks(rows):
        if any(row.keys() != columns for row in chunk):
            # A missing key would be a NULL in the JSON rows, and an unknown one ignored.
            raise ValueError(f"insert_many: every row needs exactly the columns {names}")
        if isinstance(built, _JsonInsert):
            result = connection.execute(built.stmt, {"rows": built.bound(chunk)})
        else:
            result = connection.execute(built, chunk)
        if result.returns_rows:
            back.extend(result.all())
    return back


def insert_values(
    session: Session,
    build: Callable[[Callable[[Any], Any]], Any],
    names: Sequence[str],
    values: Iterable[tuple[Any, ...]],
) -> list[Any]:
    """:func:`insert_many` of rows given as tuples of the ``names`` columns' values (as
    :func:`copy_rows` takes them: its callers' fallback)."""
    return insert_many(session, build, [dict(zip(names, v, strict=True)) for v in values])


@dataclass(frozen=True)
class _JsonInsert:
    """PostgreSQL's INSERT of the rows in one JSON parameter (see :func:`insert_many`)."""

    stmt: Any
    encode: Callable[[dict[str, Any]], dict[str, Any]]

    @classmethod
    def build(cls, build: Callable[[Callable[[Any], Any]], Any], names: tuple[str, ...]) -> _JsonInsert:
        def insert(table: Any) -> Any:
            return postgresql.insert(table).from_select(list(names), sa_select(*_json_rows(table, names).c))

        stmt = build(insert)
        return cls(stmt, _json_encoder(stmt.table, names))

    def bound(self, rows: Sequence[dict[str, Any]]) -> Sequence[dict[str, Any]]:
        return [self.encode(row) for row in rows]


def _json_rows(table: Any, names: Sequence[str], *extra: Any) -> Any:
    """``json_to_recordset(%(rows)s::JSON) AS anon(name type, …)``: the rows of the JSON
    parameter ``rows``, the named columns of ``table`` each read as its own type."""
    return (
        func.json_to_recordset(bindparam("rows", type_=JSON))
        .table_valued(*extra, *(column(name, table.c[name].type) for name in names))
        .render_derived(with_types=True)
    )


_PG = postgresql.dialect()  # type: ignore[no-untyped-call]


def _json_encoder(table: Any, names: Sequence[str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """What a row of values for these columns becomes in the JSON rows. The JSON bypasses the
    column types, so what a type does to a value before binding it is done here: ``UTCDateTime``
    makes a datetime aware UTC and refuses a naive one; bytes become ``bytea``'s hex text. Every
    other value goes as the JSON serializer writes it (a JSON column's value nested as it is).

    ``UTCDateTime`` returns None, and a datetime already in ``datetime.UTC`` (every one the
    service makes or reads back), as it is, so those values skip its call, and only the row's
    own columns are looked at: a 304's row (six columns, four of them datetimes) took 2.1 µs
    here when every value went through its step and every converted column was tested against
    the row, 0.55 µs now (round 36 in docs/performance-history.md)."""
    steps: dict[str, Callable[[Any], Any]] = {}
    for name in names:
        kind = table.c[name].type
        if (
            isinstance(kind, TypeDecorator)
            and type(kind).process_bind_param is not TypeDecorator.process_bind_param
        ):
            steps[name] = partial(kind.process_bind_param, dialect=_PG)
        elif isinstance(kind, LargeBinary):
            steps[name] = _bytea
    if not steps:
        return lambda row: row
    utc = frozenset(name for name in steps if isinstance(table.c[name].type, UTCDateTime))

    def encode(row: dict[str, Any]) -> dict[str, Any]:
        return row | {
            name: steps[name](value)
            for name, value in row.items()
            if name in steps and not (name in utc and (value is None or value.tzinfo is UTC))
        }

    return encode


def _bytea(value: bytes | None) -> str | None:
    return None if value is None else "\\x" + value.hex()


# --- feeds -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncReport:
    added: int
    updated: int
    disabled: int


def sync_feeds(session: Session, specs: Sequence[FeedSpec], now: datetime) -> SyncReport:
    """Make the feed table match the configuration; runtime state is kept.

    A feed is keyed by the URL written in the configuration (``config_url``), so an adopted
    redirect does not make it look new. Feeds removed from the configuration are disabled, not
    deleted: their articles and history stay.
    """
    existing = {f.config_url: f for f in session.exec(select(Feed)).all()}
    added = updated = disabled = 0
    for spec in specs:
        feed = existing.pop(spec.url, None)
        if feed is None:
            feed = Feed(
                config_url=spec.url,
                url=spec.url,
                origin=origin_of(spec.url),
                next_check_at=now,
                created_at=now,
            )
            added += 1
        else:
            updated += 1
        feed.name = spec.name
        feed.language = spec.language
        feed.tags = list(spec.tags)
        feed.interval_minutes = spec.interval_minutes
        feed.min_interval_minutes = spec.min_interval_minutes
        feed.max_interval_minutes = spec.max_interval_minutes
        feed.full_text = spec.full_text
        if spec.enabled and not feed.enabled:
            feed.next_check_at = now
        feed.enabled = spec.enabled
        feed.updated_at = now
        session.add(feed)
    for feed in existing.values():
        if feed.enabled and "ingest" not in feed.tags:
            feed.enabled = False
            feed.updated_at = now
            session.add(feed)
            disabled += 1
    session.flush()
    mark_rounds(session)
    return SyncReport(added=added, updated=updated, disabled=disabled)


#: The most enabled feeds an origin may have for the tick to poll them in rounds. An origin with
#: more is polled often enough that its connections stay in use: 500 feeds polled hourly are a
#: poll every 7 s, every 14 s in each of two worker processes, inside the 15 s a connection is
#: kept (``fetch.client.KEEPALIVE_TIMEOUT``). Its rows then stay out of the rounds' index, which
#: costs every update of a row in it an entry (the benchmark's farm, 10,000 feeds on one origin).
ROUND_ORIGIN_MOST = 500


def mark_rounds(session: Session) -> int:
    """Set ``Feed.in_rounds``: an enabled feed whose origin has 2 to ``ROUND_ORIGIN_MOST`` enabled
    feeds. Only rows whose flag changes are written; returns their number. Every sync runs it; a
    feed that adopts a redirect to another origin keeps its flag until the next."""
    shared = (
        sa_select(col(Feed.origin))
        .where(col(Feed.enabled), col(Feed.origin).is_not(None))
        .group_by(col(Feed.origin))
        .having(func.count().between(2, ROUND_ORIGIN_MOST))
    )
    flag = and_(col(Feed.enabled), col(Feed.origin).is_not(None), col(Feed.origin).in_(shared))
    result = session.execute(
        update(Feed).where(col(Feed.in_rounds) != flag).values(in_rounds=flag),
        execution_options={"synchronize_session": False},
    )
    return int(getattr(result, "rowcount", 0) or 0)


class Claim(NamedTuple):
    """A feed a tick claimed."""

    id: int
    unreported: int  # earlier claims of it whose poll never reported
    body_bytes: int | None  # its last body's size (``Feed.body_bytes``): what the tick batches by
    origin: str | None  # ``Feed.origin``: the tick puts an origin's feeds in one batch
    early: bool = False  # taken before it fell due, with a due feed of its origin (``Rounds``)


@dataclass(frozen=True)
class Rounds:
    """Which feeds a tick takes early, with a due feed of their origin: one connection (and one TLS
    handshake) then serves the origin's feeds, where feeds polled on their own schedules each
    open one (docs/polling.md, "Rounds").

    A feed goes early when it falls due within ``share`` of the time since its last poll (its
    current interval) and within ``most_early``; at most ``per_origin`` feeds of an origin a tick,
    its due ones counted (a round: what its host's pacing lets start within a few seconds, or
    its slots take at once). Only feeds ``in_rounds`` (:func:`mark_rounds`: an origin of 2 to
    ``ROUND_ORIGIN_MOST`` feeds) go early. Never early: a feed never polled, one whose last poll
    failed (its backoff, a server's Retry-After), one whose poll is outstanding, and any feed of
    a busy origin, one with more than ``per_origin`` feeds falling due within ``most_early``: its
    connections are in use anyway.
    """

    share: float
    most_early: timedelta
    per_origin: int


def claim_due_feeds(
    session: Session, now: datetime, limit: int, lease_seconds: int, rounds: Rounds | None = None
) -> list[Claim]:
    """Claim up to ``limit`` due feeds in one statement, and with ``rounds`` the feeds of their
    origins that fall due soon (while ``limit`` leaves room); by id.

    Claiming moves ``next_check_at`` forward by the lease, so a second tick (a second beat, a
    redelivered tick) finds nothing to claim, and a poll that dies without reporting is retried
    once the lease runs out. Each claim counts in ``unreported_claims`` until a poll reports;
    the caller isolates or fails feeds whose polls keep dying.
    """
    connection = session.connection()
    rows = connection.execute(due_claim(connection.dialect.name, now, limit, lease_seconds)).all()
    claimed = sorted(
        Claim(int(feed_id), int(claims) - 1, size, origin) for feed_id, claims, size, origin in rows
    )
    if rounds is None or not claimed or len(claimed) >= limit:
        return claimed
    early = _early_ids(session, now, claimed, limit - len(claimed), rounds)
    if not early:
        return claimed
    # Unclaimed still: a concurrent tick's claim since the read moved the feed on and counted it.
    unclaimed = select(col(Feed.id)).where(
        col(Feed.id).in_(early), col(Feed.next_check_at) > now, col(Feed.unreported_claims) == 0
    )
    taken = _claim(session, Feed, unclaimed, claim_values(now, lease_seconds), *CLAIM_RETURNING)
    claimed += [Claim(int(i), int(claims) - 1, size, origin, early=True) for i, claims, size, origin in taken]
    return sorted(claimed)


def due_feeds(now: datetime, limit: int) -> Any:
    """The tick's read of the feeds due at ``now``, at most ``limit``, soonest first."""
    return (
        select(col(Feed.id))
        .where(col(Feed.enabled), col(Feed.state) != FeedState.DISABLED, col(Feed.next_check_at) <= now)
        .order_by(col(Feed.next_check_at))
        .limit(limit)
    )


def claim_values(now: datetime, lease_seconds: int) -> dict[str, Any]:
    """What a claim sets: the feed is due again once the lease is over, and counted as claimed."""
    return {
        "claimed_at": now,
        "next_check_at": now + timedelta(seconds=lease_seconds),
        "unreported_claims": Feed.unreported_claims + 1,
    }


#: What a claim returns of each claimed feed besides its id.
CLAIM_RETURNING = (col(Feed.unreported_claims), col(Feed.body_bytes), col(Feed.origin))


def due_claim(dialect: str, now: datetime, limit: int, lease_seconds: int) -> Any:
    """:func:`claim_due_feeds`' claim of the due feeds (those taken early come after it), on
    ``dialect``: the statement the tick runs, and the benchmarks and plan tests explain."""
    return claim_statement(
        dialect, Feed, due_feeds(now, limit), claim_values(now, lease_seconds), *CLAIM_RETURNING
    )


def _early_ids(
    session: Session, now: datetime, claimed: Sequence[Claim], room: int, rounds: Rounds
) -> list[int]:
    """The feeds ``rounds`` lets a tick take early with ``claimed``, at most ``room``.

    An origin with more than ``per_origin`` feeds falling due within ``most_early`` is busy: its
    due feeds fill its rounds and keep its connections in use on their own, so none of its feeds
    goes early (a deployment's feeds on one aggregator, the benchmark's farm). The read takes at
    most ``per_origin`` + 1 rows an origin's worth, soonest first, and locks nothing: the
    caller's claim checks again that each feed is still unclaimed."""
    due_of: dict[str, int] = {}
    for claim in claimed:
        if claim.origin is not None:
            due_of[claim.origin] = due_of.get(claim.origin, 0) + 1
    left = {origin: rounds.per_origin - n for origin, n in due_of.items() if n < rounds.per_origin}
    if not left:
        return []
    rows = session.execute(_soon(sorted(left), now, rounds)).all()
    busy = {
        origin
        for origin, n in Counter(row[1] for row in rows).items()
        if due_of[origin] + n > rounds.per_origin
    }
    # An origin not busy has no more feeds falling due soon than its round has places left.
    early = [
        int(feed_id)
        for feed_id, origin, next_check_at, last_polled_at, errors, unreported in rows
        if origin not in busy
        and errors == 0
        and unreported == 0
        and last_polled_at is not None
        and next_check_at - now <= rounds.share * (next_check_at - last_polled_at)
    ]
    return early[:room]


def _soon(origins: Sequence[str], now: datetime, rounds: Rounds) -> Any:
    """The feeds in rounds of ``origins`` that fall due within ``rounds.most_early``, soonest first,
    the ``per_origin`` + 1 soonest of each origin at most (enough to tell it busy), so an origin
    with many feeds falling due takes no other origin's places: read through the rounds' partial
    index."""
    place = func.row_number().over(partition_by=col(Feed.origin), order_by=col(Feed.next_check_at))
    ranked = (
        sa_select(
            col(Feed.id),
            col(Feed.origin),
            col(Feed.next_check_at),
            col(Feed.last_polled_at),
            col(Feed.error_count),
            col(Feed.unreported_claims),
            place.label("place"),
        )
        .where(
            col(Feed.in_rounds),
            col(Feed.origin).in_(origins),
            col(Feed.next_check_at) > now,
            col(Feed.next_check_at) <= now + rounds.most_early,
            col(Feed.enabled),
            col(Feed.state) != FeedState.DISABLED,
        )
        .subquery()
    )
    return (
        sa_select(*(c for c in ranked.c if c.name != "place"))
        .where(ranked.c.place <= rounds.per_origin + 1)
        .order_by(ranked.c.next_check_at)
    )


def _claim(
    session: Session, model: Any, due: Any, values: dict[str, Any], *returning: Any
) -> list[tuple[Any, ...]]:
    """UPDATE the rows ``due`` selects with ``values``; return (id, *``returning`` after), by id.

    One statement: on PostgreSQL the ``due`` subquery locks its rows with ``FOR UPDATE SKIP
    LOCKED``, so concurrent claims take disjoint rows; SQLite serializes writers, so the single
    UPDATE is atomic there as it is.
    """
    connection = session.connection()
    stmt = claim_statement(connection.dialect.name, model, due, values, *returning)
    return sorted((tuple(row) for row in connection.execute(stmt).all()), key=itemgetter(0))


def claim_statement(dialect: str, model: Any, due: Any, values: dict[str, Any], *returning: Any) -> Any:
    """:func:`_claim`'s statement on ``dialect``.

    On PostgreSQL the rows ``due`` selects (and locks) go to the UPDATE as one array, which it
    finds through the primary key: ``id = ANY(ARRAY(SELECT …))``. Written ``id IN (SELECT …)``
    until round 62, it was a join, planned as a hash join of the selected ids against a
    sequential scan of the whole table wherever the planner believed many rows due (its
    statistics of ``next_check_at`` are up to a minute old, and the benchmark's feeds fall due
    every ten seconds): every tick of a soak run read every page of ``feed`` twice. This way
    the claim runs one plan, custom or generic, and cost PostgreSQL 4.5-11.7 % less CPU as the
    service prepares it (``benchmarks/claim_forms.py``: 20.0 -> 18.2 ms a claim of 500 of
    10,000 feeds), a quarter less than the old form's custom plan (32.8 -> 24.5 ms;
    docs/performance-history.md, round 62).

    On the table, not the model: the ORM's UPDATE would also match the returned rows against
    the session's objects, which cost a tick more than the statement (~14 against ~8 µs a
    claimed feed; round 21). No caller holds the claimed rows as objects; a later
    ``session.get`` reads them afresh."""
    table = _table(model)
    if dialect == "postgresql":
        chosen = any_(func.array(due.with_for_update(skip_locked=True).scalar_subquery()))
        where = table.c.id == chosen
    else:
        where = table.c.id.in_(due.scalar_subquery())
    return update(table).where(where).values(**values).returning(table.c.id, *returning)


def release_claims(session: Session, ids: Sequence[int], now: datetime) -> None:
    """Make claimed feeds due again at once (their poll message could not be published)."""
    if ids:
        session.execute(
            update(Feed).where(col(Feed.id).in_(list(ids))).values(next_check_at=now, claimed_at=None)
        )


@immutable
class PollTarget:
    """What a poll's fetch and parse read of a feed row: plain values, no ORM object (building
    one ``Feed`` per polled feed was ~5 % of a feeds worker). ``feedstate`` writes the row."""

    id: int
    url: str
    enabled: bool
    language: str | None
    full_text: bool
    body_hash: str | None
    entry_fingerprints: bytes | None
    item_spans: bytes | None
    etag: str | None
    last_modified: str | None
    conditional_polls: int
    last_unconditional_at: datetime | None
    created_at: datetime


#: The ``Feed`` columns a :class:`PollTarget` holds, in its fields' order.
POLL_COLUMNS = tuple(f.name for f in fields(PollTarget))


def feed_columns(session: Session, ids: Iterable[int], columns: Sequence[str]) -> list[tuple[Any, ...]]:
    """These columns (in this order) of the feed rows with these ids, by id: one Core SELECT,
    no ORM objects.

    On PostgreSQL the statement runs on psycopg's own cursor, its rows in binary: a poll batch
    reads 100 wide rows (~45 columns, the item spans' ~1.2 KB among them), and SQLAlchemy's
    rows, their per-column processors and the text format's hex-encoded ``bytea`` cost ~27–35
    µs of the worker's CPU a row where this costs ~12–17 (round 33 in
    docs/performance-history.md). The values are the ones SQLAlchemy gives: psycopg loads the
    JSON columns through the engine's deserializer, and the timestamps are made UTC here as
    sqlmodel's ``UTCDateTime`` makes them (:func:`_utc_rows`)."""
    ids = list(ids)
    if not ids:
        return []
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        sql, stamps = _feed_select_pg(tuple(columns))
        with connection.connection.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
            cursor.execute(sql, {"b_ids": ids}, binary=True)
            return _utc_rows(cursor.fetchall(), stamps)
    # ``all()``: one fetchall of psycopg's, where iterating the result fetched row by row (the
    # batch's 100 wide rows: ~8 µs a row less, round 19 in docs/performance-history.md).
    result = connection.execute(_feed_select(tuple(columns)), {"b_ids": ids})
    return [tuple(row) for row in result.all()]


@cache
def _feed_select(columns: tuple[str, ...]) -> Any:
    table = _table(Feed)
    return sa_select(*(table.c[name] for name in columns)).where(in_list(table.c.id)).order_by(table.c.id)


@cache
def _feed_select_pg(columns: tuple[str, ...]) -> tuple[str, tuple[int, ...]]:
    """The SELECT's text for psycopg, and the positions of its timestamp columns."""
    table = _table(Feed)
    sql = str(_feed_select(columns).compile(dialect=postgresql.psycopg.dialect()))  # type: ignore[no-untyped-call]
    types = [table.c[name].type for name in columns]
    stamps = tuple(i for i, t in enumerate(types) if isinstance(getattr(t, "impl_instance", t), DateTime))
    return sql, stamps


def _utc_rows(rows: list[tuple[Any, ...]], stamps: tuple[int, ...]) -> list[tuple[Any, ...]]:
    """``rows`` with the timestamps at ``stamps`` in UTC (``datetime.UTC``), as sqlmodel's
    ``UTCDateTime`` gives them. psycopg gives every timestamp of a result the connection's
    zone: UTC itself on connections set to it (``db._utc_session``), and then the rows are
    returned as they are; in any other zone each timestamp is converted."""
    zone = next((row[i].tzinfo for row in rows for i in stamps if row[i] is not None), UTC)
    if zone is UTC:
        return rows
    return [
        tuple(to_utc(v) if i in stamps and v is not None else v for i, v in enumerate(row)) for row in rows
    ]


def update_feeds(session: Session, changes: Sequence[tuple[int, dict[str, Any]]]) -> None:
    """Set columns of feed rows: (id, column → value) pairs, written in the order given; a row
    with nothing to set is skipped.

    On PostgreSQL the rows go :data:`INSERT_CHUNK` at a time in ONE statement of constant text
    (:func:`_feed_update`): each JSON row holds the feed's id, the values it sets and a bit mask
    of the columns it sets, and every other column keeps the value the row has when the
    statement runs. An executemany of ``UPDATE feed SET … WHERE id = :id`` per run of rows
    setting the same columns was ~16 runs for a batch of 100 polls (rows in id order, their
    outcomes mixed), one Python-side bind and one statement for PostgreSQL per row (round 8 in
    docs/performance-history.md). PostgreSQL finds the rows through the primary key, in id order, so a
    batch locks them in id order as before (``changes`` come sorted by id).

    The poll history, the one wide value every poll sets, goes apart from the JSON rows: the
    chunk's histories as one ``text[]`` parameter in binary, a row holding its history's place
    in it (:func:`_history_apart`). Nested in its row it was lexed twice by PostgreSQL (as part
    of the document, then by ``json``'s input function); in psycopg's text format a ``text[]``
    escapes each of a history's quotes in a Python callback (round 63).

    On SQLite, consecutive rows that set the same columns share one ``UPDATE … WHERE id = :id``
    executemany (as an ORM flush groups its UPDATEs); the SET clause is the parameters' keys,
    so each column set compiles once per process.
    """
    changes = [c for c in changes if c[1]]
    if not changes:
        return
    connection = session.connection()
    table = _table(Feed)
    if connection.dialect.name == "postgresql":
        stmt, bits, encode = _feed_update()
        for chunk in chunks(changes):
            histories: list[str] = []
            rows = [
                {"id": i, "mask": sum(map(bits.__getitem__, v)), **encode(_history_apart(v, histories))}
                for i, v in chunk
            ]
            connection.execute(stmt, {"rows": rows, "ids": [i for i, _ in chunk], "histories": histories})
        return
    stmt = update(table).where(table.c.id == bindparam("feed_id"))
    for _, run in groupby(changes, key=lambda c: tuple(c[1])):
        connection.execute(stmt, [{"feed_id": feed_id, **values} for feed_id, values in run])


def _history_apart(values: dict[str, Any], histories: list[str]) -> dict[str, Any]:
    """A row's values with its ``poll_history`` replaced by ``h``, the history's place (from 1)
    in ``histories``, where its JSON text is appended."""
    if _HISTORY not in values:
        return values
    row = values.copy()
    histories.append(json_dumps(row.pop(_HISTORY)))
    row["h"] = len(histories)
    return row


_HISTORY = "poll_history"


@cache
def _feed_update() -> tuple[Any, dict[str, int], Callable[[dict[str, Any]], dict[str, Any]]]:
    """``UPDATE feed SET c = CASE WHEN r.mask & <c's bit> != 0 THEN r.c ELSE feed.c END, …
    FROM json_to_recordset(%(rows)s::JSON) AS r(id INTEGER, mask BIGINT, h INTEGER, c type, …)
    WHERE feed.id = ANY(%(ids)s) AND feed.id = r.id`` over every column but the id, where
    ``poll_history``'s value is ``(SELECT CAST(%(histories)b::TEXT[] AS JSON[]))[r.h]``; the bit
    of each column; the encoder of the rows' other values.

    The histories' array is cast in a scalar subquery, which PostgreSQL runs once (an
    InitPlan): in the row's expression a generic plan (psycopg prepares a statement after its
    fifth run) cast the whole array again for every row, ~15× the statement's time
    (``benchmarks/state_forms.py``). The array goes in binary (:class:`ArrayParameter`), the
    strings as their bytes."""
    table = _table(Feed)
    names = [c.name for c in table.c if c.name != "id"]
    if len(names) > 63:
        raise RuntimeError("update_feeds: more feed columns than bits in a BIGINT mask")
    bits = {name: 1 << i for i, name in enumerate(names)}
    others = [name for name in names if name != _HISTORY]
    rows = _json_rows(table, others, column("id", Integer), column("mask", BigInteger), column("h", Integer))
    histories = _histories_as_json(ArrayParameter("histories", postgresql.ARRAY(Text)))
    zero: Any = literal_column("0")
    values = {
        name: case(
            (
                rows.c.mask.op("&")(literal_column(str(bit))) != zero,
                histories[rows.c.h] if name == _HISTORY else rows.c[name],
            ),
            else_=table.c[name],
        )
        for name, bit in bits.items()
    }
    # The ids again as an array: PostgreSQL then reads the rows through the primary key (in id
    # order) and hashes the JSON rows; joined on the JSON rows alone it chose a hash join over a
    # scan of the whole table (10,000 feeds, EXPLAIN), which also locks in the table's order.
    ids = any_(bindparam("ids", type_=postgresql.ARRAY(Integer)))
    stmt = update(table).where(table.c.id == ids, table.c.id == rows.c.id).values(values)
    return stmt, bits, _json_encoder(table, others)


def _histories_as_json(texts: Any) -> Any:
    """``(SELECT CAST(texts AS JSON[]))``, a ``text[]`` parameter's strings as an array of
    ``json`` that an index (``[r.h]``) reads: cast in a scalar subquery, an InitPlan, once a
    statement (:func:`_feed_update`; ``benchmarks/state_forms.py`` binds it in the text
    format to compare)."""
    json_array = postgresql.ARRAY(postgresql.JSON)
    return type_coerce(Grouping(sa_select(cast(texts, json_array)).scalar_subquery()), json_array)


def get_or_create_adhoc_feed(session: Session, url: str, now: datetime) -> Feed:
    """The feed row for a one-shot ``feedwatch ingest`` source (never polled by the service)."""
    feed = session.exec(select(Feed).where(col(Feed.config_url) == url)).first()
    if feed is None:
        feed = Feed(
            config_url=url,
            url=url,
            origin=origin_of(url),
            name=url,
            enabled=False,
            tags=["ingest"],
            created_at=now,
        )
        session.add(feed)
        session.flush()
    return feed


# --- articles, matches, alerts ------------------------------------------------------------------


_ART = _table(Article).c
_IDS_BY_KEY = sa_select(_ART.identity_key, _ART.id).where(in_list(_ART.identity_key))


def _insert_articles(insert: Any) -> Any:
    return (
        insert(_table(Article))
        .on_conflict_do_nothing(index_elements=["identity_key"])
        .returning(_ART.id, _ART.identity_key)
    )


def _insert_sightings(insert: Any) -> Any:
    return insert(_table(Sighting)).on_conflict_do_nothing(index_elements=["article_id", "feed_id"])


def _insert_matches(insert: Any) -> Any:
    return insert(_table(Match)).on_conflict_do_nothing(index_elements=["article_id", "topic"])


def _insert_alerts(insert: Any) -> Any:
    return (
        insert(_table(Alert))
        .on_conflict_do_nothing(index_elements=["article_id"])
        .returning(_table(Alert).c.id, _table(Alert).c.article_id)
    )


def ids_by_key(session: Session, keys: Sequence[str]) -> dict[str, int]:
    """identity_key → article id, for the keys stored already."""
    if not keys:
        return {}
    return {key: article_id for key, article_id in session.execute(_IDS_BY_KEY, {"b_ids": list(keys)}).all()}


#: Rows per INSERT (``insert_many``). A poll batch's new articles go in a few statements, not one
#: per feed (``pipeline.store_batch``), but not all at once: an ingest batch of 5,000 new articles
#: in one ``INSERT … VALUES`` held their rows, the statement and psycopg's conversion of its
#: 70,000 placeholders together, ~20 MB above a worker's peak with 50 at a time. (On PostgreSQL a
#: chunk is now one JSON document of its rows; the bound still holds the document's size.)
INSERT_CHUNK = 200


_T = TypeVar("_T")


def chunks(items: Sequence[_T]) -> Iterator[Sequence[_T]]:
    """``items`` in consecutive runs of at most :data:`INSERT_CHUNK`."""
    for start in range(0, len(items), INSERT_CHUNK):
        yield items[start : start + INSERT_CHUNK]


def insert_articles(
    session: Session, drafts: Sequence[tuple[int, ArticleDraft]], now: datetime, flagged: set[str]
) -> dict[str, int]:
    """Insert the (feed id, draft) pairs not stored yet, in the order given; return
    identity_key → id for the rows inserted here.

    A row another transaction inserted first is skipped by ``ON CONFLICT DO NOTHING`` and so is
    not returned: only the poll that stored an article creates its matches and alert.

    On PostgreSQL the rows go first as one binary ``COPY`` (:func:`copy_rows`): the caller has
    just looked their keys up, so they are new unless another transaction stored one since; then
    the ``COPY`` stores nothing and the rows go by the ``INSERT … ON CONFLICT`` below.
    """
    values = (_article_values(feed_id, d, now, flagged) for feed_id, d in drafts)
    ids = copy_rows(session, Article, _ARTICLE_COLUMNS, values, len(drafts))
    if ids is not None:
        return {d.identity_key: article_id for (_, d), article_id in zip(drafts, ids, strict=True)}
    inserted: dict[str, int] = {}
    for chunk in chunks(drafts):  # the rows of one chunk at a time: an ingest batch has 5,000
        chunk_values = (_article_values(feed_id, d, now, flagged) for feed_id, d in chunk)
        returned = insert_values(session, _insert_articles, _ARTICLE_COLUMNS, chunk_values)
        inserted.update((key, article_id) for article_id, key in returned)
    return inserted


_ARTICLE_COLUMNS = (
    "identity_key",
    "feed_id",
    "guid",
    "url",
    "title",
    "summary",
    "text",
    "author",
    "language",
    "published_at",
    "published_from_feed",
    "fetched_at",
    "content_hash",
    "flagged",
)


def _article_values(feed_id: int, d: ArticleDraft, now: datetime, flagged: set[str]) -> tuple[Any, ...]:
    """An article row's values, in the order of :data:`_ARTICLE_COLUMNS`."""
    return (
        d.identity_key,
        feed_id,
        d.guid,
        d.url,
        d.title,
        d.summary,
        d.text,
        d.author,
        d.language,
        to_utc(d.published_at),
        d.published_from_feed,
        now,
        d.content_hash,
        d.identity_key in flagged,
    )


class _CopyPlan(NamedTuple):
    sql: str
    types: list[int]
    defaults: tuple[Any, ...]
    sequence: str | None  # None: the rows carry their key


#: Per database (engine): (table, columns) → its plan.
_COPY_PLANS: WeakKeyDictionary[Engine, dict[tuple[str, tuple[str, ...]], _CopyPlan]] = WeakKeyDictionary()


def copy_rows(
    session: Session, model: Any, names: Sequence[str], rows: Iterable[tuple[Any, ...]], count: int
) -> list[int] | None:
    """PostgreSQL: insert ``count`` rows (tuples of the ``names`` columns' values) into ``model``'s
    table by one binary ``COPY``, in the order given, with ids drawn from the table's sequence
    first; return the ids in that order (none are drawn when the rows carry their key: ``[]``).
    ``None`` when a row breaks a unique constraint (one is stored already): then nothing is
    inserted, and the session's transaction goes on (the ``COPY`` runs in a savepoint). ``None``
    on SQLite as well: the caller inserts the rows by :func:`insert_many` then. No rows: ``[]``,
    on either database, without a statement.

    ``COPY`` is PostgreSQL's bulk path: a row parsed in C from its binary message, no JSON to
    read back, heap pages filled many rows at a time. For an ingest batch's articles it cost the
    backend 17.5–21 µs a row against 24.5–29.5 for ``INSERT … SELECT FROM json_to_recordset …
    ON CONFLICT … RETURNING``, and the client 3.7–5.2 µs against 5.6–6.6 (round 38 in
    docs/performance-history.md); a flagged article's match, alert and story keys go the same way
    since round 39. It has no ``ON CONFLICT`` and no ``RETURNING``: hence the ids drawn first,
    and ``None`` on a conflict for the caller to fall back on :func:`insert_many`.
    The column types are read from the catalog once a process (binary ``COPY`` needs each
    column's own type); a column left out takes its Python-side scalar default, as SQLAlchemy's
    ``INSERT`` gives it, or else the server's. JSON values are written by the engine's
    serializer (:func:`feedwatch.db.json_bytes`, which SQLAlchemy sets on the connection's
    adapters), as :func:`insert_many` writes them.
    """
    if not count:
        return []
    if session.get_bind().dialect.name != "postgresql":
        return None
    import psycopg

    table = _table(model)
    connection = session.connection()
    plans = _COPY_PLANS.setdefault(connection.engine, {})
    plan = plans.get((table.name, tuple(names)))
    if plan is None:
        plan = plans[table.name, tuple(names)] = _copy_plan(connection, table, names)
    raw: psycopg.Connection[Any] = connection.connection.dbapi_connection  # type: ignore[assignment]
    with raw.cursor() as cursor:
        ids: list[int] = []
        if plan.sequence is not None:
            cursor.execute("SELECT nextval(%s::regclass) FROM generate_series(1, %s)", (plan.sequence, count))
            ids = [row[0] for row in cursor.fetchall()]
        try:
            # The connection's savepoint, not the session's: the ORM's emits its SAVEPOINT only
            # with the session's next statement (a raw COPY is none), and its release would fire
            # the session's commit events.
            with connection.begin_nested(), cursor.copy(plan.sql) as copy:
                copy.set_types(plan.types)
                for values in _copy_values(plan, ids, rows):
                    copy.write_row(values)
        except psycopg.errors.UniqueViolation as exc:
            log.info("copy_conflict", table=table.name, rows=count, constraint=exc.diag.constraint_name)
            return None
    return ids


def _copy_values(
    plan: _CopyPlan, ids: list[int], rows: Iterable[tuple[Any, ...]]
) -> Iterable[tuple[Any, ...]]:
    """Each row as the ``COPY`` of ``plan`` takes it: its drawn id first (when ids are drawn),
    the defaults last; one tuple built a row."""
    if plan.sequence is None:
        return ((*values, *plan.defaults) for values in rows) if plan.defaults else rows
    return ((row_id, *values, *plan.defaults) for row_id, values in zip(ids, rows, strict=True))


def _copy_plan(connection: Any, table: Any, names: Sequence[str]) -> _CopyPlan:
    """The ``COPY`` statement for these columns of ``table`` (its key first unless the rows
    carry it, then the columns left out that have a Python-side default), their types' OIDs as
    the database has them, and the key's sequence (None when the rows carry the key)."""
    (key,) = table.primary_key.columns
    defaults: dict[str, Any] = {}
    for c in table.columns:
        if c.name == key.name or c.name in names or c.default is None:
            continue
        if not c.default.is_scalar:
            raise ValueError(f"copy_rows: {table.name}.{c.name} has a computed default; give its value")
        defaults[c.name] = c.default.arg
    carried = key.name in names
    columns = [*([] if carried else [key.name]), *names, *defaults]
    types = dict(
        connection.exec_driver_sql(
            "SELECT attname, atttypid::int FROM pg_attribute"
            " WHERE attrelid = %(t)s::regclass AND attnum > 0 AND NOT attisdropped",
            {"t": table.name},
        ).all()
    )
    sequence = None
    if not carried:
        sequence = connection.exec_driver_sql(
            "SELECT pg_get_serial_sequence(%(t)s, %(c)s)", {"t": table.name, "c": key.name}
        ).scalar_one()
        if sequence is None:
            raise ValueError(f"copy_rows: {table.name}.{key.name} draws from no sequence; give its value")
    quoted = ", ".join(f'"{name}"' for name in columns)
    return _CopyPlan(
        f'COPY "{table.name}" ({quoted}) FROM STDIN (FORMAT BINARY)',
        [types[name] for name in columns],
        tuple(defaults.values()),
        sequence,
    )


class StoredKeys(NamedTuple):
    """What :func:`stored_keys` found of the identity keys it was asked about."""

    asked: frozenset[str]
    ids: Mapping[str, int]  # identity key → article id, for the keys stored
    seen: frozenset[tuple[int, str]]  # (feed id, key): the feed that stored the article, and each sighting


NO_KEYS = StoredKeys(frozenset(), MappingProxyType({}), frozenset())


def stored_keys(session: Session, keys: Sequence[str]) -> StoredKeys:
    """Which of these identity keys are stored: each one's article id, and the feeds that have
    seen it (the article's own feed, ``Article.feed_id``, and every sighting's).

    One probe of the key's unique index a key, then the article's sightings by its id. Until
    round 68 this was a ``UNION`` of the articles by key and the sightings joined to the
    articles by key, and :func:`feedwatch.pipeline.store_batch` then looked every new item's key
    up again (``ids_by_key``); it takes the ids from here now (docs/performance-history.md,
    round 68). The feeds are not in the ``WHERE`` clause: with them
    PostgreSQL could serve the statement from the feed indexes (every article or sighting of the
    batch's feeds: 4.5 ms a batch with a custom plan); by the keys alone there is one way, the
    key's index. The sightings are a correlated subquery, which PostgreSQL runs for each article
    found by the unique index on ``(article_id, feed_id)``, whatever the statistics say."""
    if not keys:
        return NO_KEYS
    ids: dict[str, int] = {}
    seen: set[tuple[int, str]] = set()
    for key, article_id, feed_id, others in session.execute(_STORED, {"b_keys": list(keys)}):
        ids[key] = article_id
        seen.add((feed_id, key))
        if others:
            seen.update((int(other), key) for other in others.split(","))
    return StoredKeys(frozenset(keys), ids, frozenset(seen))


_STORED = sa_select(
    _ART.identity_key,
    _ART.id,
    _ART.feed_id,
    sa_select(func.aggregate_strings(cast(_table(Sighting).c.feed_id, Text), ","))
    .where(_table(Sighting).c.article_id == _ART.id)
    .scalar_subquery(),
).where(in_list(_ART.identity_key, "b_keys"))


def add_sightings(session: Session, pairs: Sequence[tuple[int, int]], now: datetime) -> None:
    """Record (article id, feed id) sightings, in the order given; one seen before is kept.

    An article's own feed needs none: ``Article.feed_id`` says it (since round 10 in
    docs/performance-history.md; rows written before stay, and :func:`stored_keys` reads both). A
    sighting's two foreign keys cost PostgreSQL ~0.07 ms a row then, ~0.01 without them: a
    sighting for every new article was about a third of its CPU per ingested article. Most of
    that was re-planning each key check under forced custom plans, dropped in round 11: on one
    machine, 0.029 ms a row with the keys under forced custom plans, 0.009-0.011 with the plan
    cache, 0.002 without keys."""
    rows = [{"article_id": a, "feed_id": f, "seen_at": now} for a, f in pairs]
    insert_many(session, _insert_sightings, rows)


def insert_matches(
    session: Session, flagged: Sequence[tuple[int, Sequence[TopicMatch]]], now: datetime, stage: str
) -> None:
    """The topic matches of flagged articles, (article id, its matches) pairs; a (article, topic)
    pair stored already is left as it is. PostgreSQL: one ``COPY`` (:func:`copy_rows`), which a
    pair stored already turns into the ``INSERT … ON CONFLICT`` (the full-text stage may meet an
    article's topic again); SQLite: one insert per :data:`INSERT_CHUNK` rows."""
    values = [
        (article_id, m.topic, m.score, list(m.terms), m.snippet, m.explanation(), stage, now)
        for article_id, matches in flagged
        for m in matches
    ]
    if copy_rows(session, Match, _MATCH_COLUMNS, values, len(values)) is None:
        insert_values(session, _insert_matches, _MATCH_COLUMNS, values)


_MATCH_COLUMNS = ("article_id", "topic", "score", "terms", "snippet", "explanation", "stage", "created_at")


def create_alerts(
    session: Session, alerts: Sequence[tuple[int, Sequence[str], Sequence[int]]], now: datetime
) -> dict[int, int]:
    """Outbox rows for flagged articles, (article id, topics, story MinHash) triples: article id
    → its new alert id; an article that has an alert already is left out. PostgreSQL: one
    ``COPY`` (:func:`copy_rows`), which an article with an alert already turns into the
    ``INSERT … ON CONFLICT``; SQLite: one insert per :data:`INSERT_CHUNK` alerts.

    The MinHash is the story signature (feedwatch.stories) later copies are compared with.
    """
    values = [
        (article_id, list(topics), AlertStatus.PENDING, now, list(minhash), 0)
        for article_id, topics, minhash in alerts
    ]
    ids = copy_rows(session, Alert, _ALERT_COLUMNS, values, len(values))
    if ids is not None:
        return {article_id: alert_id for (article_id, *_), alert_id in zip(values, ids, strict=True)}
    returned = insert_values(session, _insert_alerts, _ALERT_COLUMNS, values)
    return {int(article_id): int(alert_id) for alert_id, article_id in returned}


_ALERT_COLUMNS = ("article_id", "topics", "status", "created_at", "minhash", "attempts")


_AL = _table(Alert).c


def _lost(status: str, since: Any) -> Any:
    """The oldest alerts in ``status`` whose ``since`` is before ``b_before``: read along
    ``ix_alert_status_created`` from the status, in its order, up to ``b_limit``."""
    return (
        sa_select(_AL.id)
        .where(_AL.status == status, since <= bindparam("b_before"))
        .order_by(_AL.created_at)
        .limit(bindparam("b_limit"))
    )


_LOST_PENDING = _lost(AlertStatus.PENDING, _AL.created_at)
_LOST_QUEUED = _lost(AlertStatus.QUEUED, _AL.queued_at)
#: The ids as one array parameter (``in_list``): one statement text however many alerts.
_MARK_QUEUED = (
    update(_table(Alert))
    .where(in_list(_AL.id), _AL.status.in_([AlertStatus.PENDING, AlertStatus.QUEUED]))
    .values(status=AlertStatus.QUEUED, queued_at=bindparam("b_now"))
)


def mark_alerts_queued(session: Session, alert_ids: Sequence[int], now: datetime) -> None:
    """Record that a message was published; a delivered alert is never moved back."""
    if alert_ids:
        session.execute(_MARK_QUEUED, {"b_ids": list(alert_ids), "b_now": now})


def alerts_to_requeue(
    session: Session, now: datetime, pending_grace: timedelta, queued_timeout: timedelta, limit: int
) -> list[int]:
    """Alerts whose message may be lost, oldest first, at most ``limit``: pending past the
    grace, or queued and never delivered.

    Two statements, one a status. As one (the two conditions joined by ``OR``, ordered by id),
    PostgreSQL's generic plan walked the whole table along its primary key looking for rows that
    are almost never there: 30 ms a sweep at 300,000 alerts, every second, growing with the
    table (tests/integration/test_generic_plans.py). Each status is a short range of the index.
    """
    found: list[int] = []
    for stmt, before in ((_LOST_PENDING, now - pending_grace), (_LOST_QUEUED, now - queued_timeout)):
        found.extend(session.execute(stmt, {"b_before": before, "b_limit": limit}).scalars())
    return sorted(found)[:limit]


def heartbeat_detail(session: Session, name: str) -> dict[str, Any] | None:
    """The detail of heartbeat ``name`` (None: never written). Loads the row, so a
    :func:`write_heartbeat` in the same session after it costs no second read."""
    beat = session.get(Heartbeat, name)
    return None if beat is None else dict(beat.detail)


def write_heartbeat(session: Session, name: str, now: datetime, detail: dict[str, Any]) -> None:
    beat = session.get(Heartbeat, name)
    if beat is None:
        beat = Heartbeat(name=name)
    beat.at = now
    beat.detail = detail
    session.add(beat)


# --- full text (feedwatch.extract) ----------------------------------------------------------------


_REQUEST_FULL_TEXT = (
    update(_table(Article))
    .where(in_list(_ART.id), _ART.full_text_status.is_(None))
    .values(
        full_text_status=FullTextStatus.PENDING,
        full_text_requested_at=bindparam("b_now"),
        full_text_attempts=1,
    )
)


def request_full_text(session: Session, article_ids: Sequence[int], now: datetime) -> None:
    """Make articles full-text candidates; an article already requested or done is left alone."""
    for chunk in chunks(article_ids):
        session.execute(_REQUEST_FULL_TEXT, {"b_ids": list(chunk), "b_now": now})


def claim_lost_full_text(
    session: Session, now: datetime, older_than: timedelta, limit: int
) -> list[tuple[int, int]]:
    """Pending candidates requested before ``now - older_than`` (their message may be lost):
    stamped as requested again and counted; returns (id, attempts including this one)."""
    due = (
        select(col(Article.id))
        .where(
            col(Article.full_text_status) == FullTextStatus.PENDING,
            col(Article.full_text_requested_at) <= now - older_than,
        )
        .order_by(col(Article.full_text_requested_at))
        .limit(limit)
    )
    values = {"full_text_requested_at": now, "full_text_attempts": Article.full_text_attempts + 1}
    return [
        (int(i), int(n)) for i, n in _claim(session, Article, due, values, col(Article.full_text_attempts))
    ]


def pending_full_text(session: Session, article_ids: Iterable[int]) -> list[Article]:
    """The articles of ``article_ids`` still waiting for their full text (a redelivered message
    finds the finished ones gone)."""
    ids = list(article_ids)
    if not ids:
        return []
    stmt = select(Article).where(
        col(Article.id).in_(ids), col(Article.full_text_status) == FullTextStatus.PENDING
    )
    return list(session.exec(stmt).all())


def finish_full_text(
    session: Session,
    article_id: int,
    now: datetime,
    *,
    text: str,
    language: str | None = None,
    author: str | None = None,
) -> bool:
    """Record the stage's text (status ok; a failure is :func:`fail_full_text`). False when
    the article is no longer pending (another delivery of the same message finished it first)."""
    values: dict[str, Any] = {
        "extracted_at": now,
        "full_text_status": FullTextStatus.OK,
        "full_text": text,
        "full_text_error": None,
    }
    if language:
        values["language"] = language  # detected on the whole story: better than the feed's
    result = session.execute(
        update(Article)
        .where(col(Article.id) == article_id, col(Article.full_text_status) == FullTextStatus.PENDING)
        .values(**values)
    )
    if author:
        session.execute(
            update(Article)
            .where(col(Article.id) == article_id, col(Article.author).is_(None))
            .values(author=author)
        )
    return bool(result.rowcount)  # type: ignore[attr-defined]


#: Failed full texts of one error class, in one statement (:func:`fail_full_text`).
_FAIL_FULL_TEXT = (
    update(_table(Article))
    .where(in_list(_ART.id), _ART.full_text_status == FullTextStatus.PENDING)
    .values(
        full_text_status=FullTextStatus.FAILED,
        full_text_error=bindparam("b_error"),
        extracted_at=bindparam("b_now", type_=_table(Article).c.extracted_at.type),
    )
    .returning(_ART.id)
)


def fail_full_text(session: Session, errors: Mapping[int, str], now: datetime) -> set[int]:
    """Record these articles' full-text stage as failed (article id → error class), in one
    statement per class (a batch's failed fetches are mostly of one or two). Returns the ids
    that were still pending; the others were finished by another delivery of the same message."""
    by_class: dict[str, list[int]] = {}
    for article_id, error_class in errors.items():
        by_class.setdefault(error_class, []).append(article_id)
    done: set[int] = set()
    for error_class, ids in sorted(by_class.items()):
        params = {"b_ids": sorted(ids), "b_error": error_class, "b_now": now}
        done.update(int(i) for i in session.execute(_FAIL_FULL_TEXT, params).scalars())
    return done


def matched_topics(session: Session, article_id: int) -> set[str]:
    stmt = select(col(Match.topic)).where(col(Match.article_id) == article_id)
    return set(session.execute(stmt).scalars())


def has_alert(session: Session, article_id: int) -> bool:
    stmt = select(col(Alert.id)).where(col(Alert.article_id) == article_id)
    return session.execute(stmt).first() is not None


def flag_article(session: Session, article_id: int) -> None:
    session.execute(update(Article).where(col(Article.id) == article_id).values(flagged=True))
