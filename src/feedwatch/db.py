"""Engines, sessions and migrations: the same code for SQLite (embedded) and PostgreSQL.

Engines are built lazily per process (keyed by pid): Celery's prefork pool forks, and a pooled
connection must never cross a fork.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, create_engine

from feedwatch.settings import Settings, get_settings

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

_engines: dict[tuple[int, str], Engine] = {}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _utc_session(dbapi_connection: Any, _record: Any) -> None:
    """Every PostgreSQL session in UTC. What is stored does not change (``timestamptz`` is an
    instant), but psycopg hands out timestamps in the session's zone: in UTC they come as
    ``datetime.UTC`` itself, the value sqlmodel's ``UTCDateTime`` returns, and the poll batch's
    read on psycopg's cursor returns them as they come (``store.feed_columns``, which converts
    them where a session is in another zone). No statement of the service depends on the
    session's zone. A ``SET`` rather than a startup option, which poolers such as PgBouncer
    refuse unless told to ignore it."""
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    dbapi_connection.execute("SET TIME ZONE 'UTC'")
    dbapi_connection.autocommit = autocommit


def json_bytes(value: Any) -> bytes:
    """A JSON column's value as UTF-8, through orjson: a feed row's 20-entry ``poll_history``
    (~2.3 KB) is encoded on every poll; ``timeit`` on such a history: 10x faster than the
    standard library. PostgreSQL's engine hands these bytes to psycopg as they are (psycopg
    encodes a ``str`` to UTF-8 itself): a poll batch's feed-state rows are one JSON text of
    ~7 KB a feed that polled a change, and as a ``str`` it was decoded and encoded again, ~2 ns
    a byte once one character of it is outside Latin-1 (a schedule reason's "→"), which made
    the whole text two bytes a character (round 34 in docs/performance-history.md).

    orjson's option for keys that are not strings costs a third more on every dict, so it is
    asked for only when a value needs it (as the standard library, it writes such keys as
    strings). A value orjson refuses (a string with a lone surrogate) goes through ``json``,
    as before."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        pass
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return json.dumps(value).encode()


def json_dumps(value: Any) -> str:
    """:func:`json_bytes` as text, for SQLite, whose driver stores bytes as a BLOB."""
    return json_bytes(value).decode()


#: The engines' JSON options (SQLAlchemy hands them to psycopg on PostgreSQL). PostgreSQL's
#: serializer returns bytes, which psycopg sends as they are; so a JSON value rendered into a
#: statement's text (``literal_binds``) would not work there, and the service renders none.
_JSON_SQLITE = {"json_serializer": json_dumps, "json_deserializer": orjson.loads}
_JSON_PG = {**_JSON_SQLITE, "json_serializer": json_bytes}


def make_engine(url: str) -> Engine:
    """A new engine for ``url`` with the settings each backend needs."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **_JSON_SQLITE)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        pool_recycle=1800,
        **_JSON_PG,
        # PostgreSQL's own plan cache (plan_cache_mode=auto): psycopg prepares a statement after
        # its fifth run, and PostgreSQL keeps a generic plan for it when that plan is no worse.
        # Forcing custom plans (rounds 3-10) re-planned every statement with its values, and
        # every foreign-key check of every inserted row too (those are cached plans in the
        # server): 0.012 instead of 0.0055 ms a checked row. With the IN lists one array
        # parameter each (store.in_list), the generic plans are also the better ones: the
        # seen-items lookup 4.5 -> 0.6 ms a batch, the story lookup 7.3 -> 1.6 ms
        # (docs/performance-history.md, round 11).
        connect_args={"connect_timeout": 10},
    )
    event.listen(engine, "connect", _utc_session)
    return engine


def get_engine(settings: Settings | None = None) -> Engine:
    """This process's engine for the configured database."""
    url = (settings or get_settings()).database_url
    key = (os.getpid(), url)
    engine = _engines.get(key)
    if engine is None:
        engine = _engines[key] = make_engine(url)
    return engine


def dispose_engines() -> None:
    """Drop every engine of this process (tests, and after a fork)."""
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()


@contextmanager
def session_scope(settings: Settings | None = None) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception."""
    with Session(get_engine(settings), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextmanager
def read_scope(settings: Settings | None = None) -> Iterator[Session]:
    """A session for one read statement, outside a transaction: a single statement sees one
    snapshot on its own, so a BEGIN and a COMMIT around it are two round trips for nothing
    (~85 µs of a worker's CPU a read; round 32 in docs/performance-history.md). Two statements
    here would see two snapshots, and nothing written here is rolled back: read, once. The
    pool takes the connection back out of autocommit."""
    with Session(get_engine(settings), expire_on_commit=False) as session:
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session


def alembic_config(settings: Settings | None = None) -> Config:
    """Alembic's configuration for the migrations of this package on ``settings``' database (the
    engine handed to ``migrations/env.py``): what ``alembic.command``'s upgrade and downgrade take."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = get_engine(settings)
    return cfg


def upgrade(settings: Settings | None = None, revision: str = "head") -> None:
    """Apply Alembic migrations up to ``revision``."""
    from alembic import command

    settings = settings or get_settings()
    if settings.is_sqlite:
        settings.home.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(settings), revision)


def upkeep(settings: Settings | None = None, vacuum: Sequence[str] = ()) -> dict[str, Any] | None:
    """What autovacuum would do, done where PostgreSQL's is off (:func:`vacuum_and_analyze`;
    ``vacuum``: tables to VACUUM as well, which the caller deleted rows from). None, having done
    nothing, on SQLite and where autovacuum is on: its own settings rule.

    Without it, on such a server, nothing ever removes the index entries of a feed row's old
    versions: the tick's claim reads the due end of ``next_check_at``'s index, where every poll
    leaves its dead entries, and its cost grows with every poll ever made (round 48 in
    docs/performance-history.md: 5-18 ms a claim after five minutes of a benchmark run). And
    no table is ever analyzed, so each connection keeps the generic plans it made while the
    tables were small (round 47)."""
    with get_engine(settings).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        return vacuum_and_analyze(conn, vacuum) if autovacuum_off(conn) else None


def autovacuum_off(conn: Connection) -> bool:
    """Whether ``conn``'s server is PostgreSQL with autovacuum off (SQLite has none to be off):
    what :func:`upkeep` stands in for and ``feedwatch status`` warns of."""
    return conn.dialect.name == "postgresql" and conn.exec_driver_sql("SHOW autovacuum").scalar() == "off"


@dataclass(frozen=True, slots=True)
class IdentityIndex:
    """PostgreSQL's unique index on ``article.identity_key`` and the buffer pool it is read into."""

    name: str
    size_bytes: int
    #: ``shared_buffers``.
    pool_bytes: int


_IDENTITY_INDEX = """
SELECT indexrelid::regclass::text, pg_relation_size(indexrelid),
    pg_size_bytes(current_setting('shared_buffers'))
FROM pg_index JOIN pg_attribute ON attrelid = indrelid AND attnum = indkey[0]
WHERE indrelid = 'article'::regclass AND indisunique AND indnatts = 1 AND attname = 'identity_key'
"""


def identity_index(conn: Connection) -> IdentityIndex | None:
    """The article identity index against PostgreSQL's buffer pool; None on SQLite (whose pages
    only the OS caches) or without the index.

    Every new article's key lands on a random page of it (a SHA-256), and each poll's lookup of
    the keys it has not stored reads random pages too: once the index outgrows the pool, each is
    a read from outside it that evicts another table's page (round 66 in
    docs/performance-history.md; ~120 MB a million articles)."""
    if conn.dialect.name != "postgresql":
        return None
    row = conn.exec_driver_sql(_IDENTITY_INDEX).first()
    return None if row is None else IdentityIndex(str(row[0]), int(row[1]), int(row[2]))


@dataclass(frozen=True, slots=True)
class TableActivity:
    """What PostgreSQL's statistics say happened to a table since it was last vacuumed and
    analyzed (``pg_stat_user_tables``), its size as the last of those counted it, and the
    storage parameters an operator set on it."""

    name: str
    #: ``pg_class.reltuples``: -1 until the table's first VACUUM or ANALYZE.
    rows: float
    dead: int
    modified_since_analyze: int
    inserted_since_vacuum: int
    #: ``pg_class.reloptions``, as ``name=value`` (``ALTER TABLE … SET (autovacuum_… = …)``).
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AutovacuumRules:
    """Autovacuum's thresholds (``autovacuum_*``, as an operator tuned them): a table is due
    when what happened to it passes ``threshold + scale × rows``. The server's settings, and a
    table's own storage parameters of the same names in their place (:meth:`for_table`)."""

    vacuum_threshold: float = 50
    vacuum_scale: float = 0.2
    #: PostgreSQL 18's cap on ``threshold + scale × rows`` for dead rows; -1: none (and before 18).
    vacuum_max_threshold: float = -1
    insert_threshold: float = 1000  # -1: inserts alone never make a table due (PostgreSQL's meaning)
    insert_scale: float = 0.2
    analyze_threshold: float = 50
    analyze_scale: float = 0.1
    #: ``autovacuum_enabled``, a storage parameter only: off, autovacuum leaves the table alone.
    enabled: bool = True

    def for_table(self, options: Iterable[str]) -> AutovacuumRules:
        """These rules with a table's own storage parameters in place of the server's settings,
        as autovacuum reads them: each ``autovacuum_*`` parameter set on the table wins."""
        changes: dict[str, Any] = {}
        for option in options:
            name, _, value = option.partition("=")
            if name == "autovacuum_enabled":
                changes["enabled"] = _on(value)
            elif (field := _FIELDS.get(name)) is not None:
                changes[field] = float(value)
        return replace(self, **changes) if changes else self

    def due(self, tables: Iterable[TableActivity]) -> tuple[list[str], list[str], list[str]]:
        """The tables autovacuum would vacuum, those it would analyze, and those it leaves alone
        (their ``autovacuum_enabled`` off: left to whoever turned it off), in ``tables``' order,
        each by its own rules (:meth:`for_table`). A table never analyzed (``rows`` -1) is
        analyzed whatever its counts: round 47 found a generic plan made on such a table
        reading a whole index on every call."""
        vacuum, analyze, left = [], [], []
        for t in tables:
            rules = self.for_table(t.options)
            if not rules.enabled:
                left.append(t.name)
                continue
            rows = max(t.rows, 0.0)
            dead_limit = rules.vacuum_threshold + rules.vacuum_scale * rows
            if rules.vacuum_max_threshold >= 0:
                dead_limit = min(dead_limit, rules.vacuum_max_threshold)
            if t.dead > dead_limit or (
                rules.insert_threshold >= 0
                and t.inserted_since_vacuum > rules.insert_threshold + rules.insert_scale * rows
            ):
                vacuum.append(t.name)
            if t.rows < 0 or t.modified_since_analyze > rules.analyze_threshold + rules.analyze_scale * rows:
                analyze.append(t.name)
        return vacuum, analyze, left


def _on(value: str) -> bool:
    """A boolean storage parameter's value as PostgreSQL reads it (``parse_bool``): ``on``,
    ``1``, or a prefix of ``true`` or ``yes``; stored as the operator wrote it."""
    value = value.strip().lower()
    return value in ("on", "1") or (value != "" and ("true".startswith(value) or "yes".startswith(value)))


#: ``AutovacuumRules``' numeric fields by the server setting each is read from; a table's storage
#: parameters of the same names override them.
_RULES = {
    "vacuum_threshold": "autovacuum_vacuum_threshold",
    "vacuum_scale": "autovacuum_vacuum_scale_factor",
    "vacuum_max_threshold": "autovacuum_vacuum_max_threshold",
    "insert_threshold": "autovacuum_vacuum_insert_threshold",
    "insert_scale": "autovacuum_vacuum_insert_scale_factor",
    "analyze_threshold": "autovacuum_analyze_threshold",
    "analyze_scale": "autovacuum_analyze_scale_factor",
}
_FIELDS = {name: field for field, name in _RULES.items()}
_SETTINGS = "SELECT name, setting FROM pg_settings WHERE name = ANY(%(names)s)"

_ACTIVITY = """
SELECT c.relname, c.reltuples, s.n_dead_tup, s.n_mod_since_analyze, s.n_ins_since_vacuum, c.reloptions
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.schemaname = current_schema() AND c.relname = ANY(%(names)s)
"""


def table_activity(conn: Connection, names: Sequence[str]) -> list[TableActivity]:
    """``names``' activity (PostgreSQL 13 and later), in ``names``' order. A backend sends its
    counts to the statistics a second or so after its transaction ends: a task run every minute
    reads them close enough."""
    rows = {r[0]: r for r in conn.exec_driver_sql(_ACTIVITY, {"names": list(names)})}
    return [
        TableActivity(name, float(r[1]), int(r[2]), int(r[3]), int(r[4]), tuple(r[5] or ()))
        for name in names
        if (r := rows.get(name)) is not None
    ]


def autovacuum_rules(conn: Connection) -> AutovacuumRules:
    """The server's autovacuum thresholds, in one round trip. A setting this server does not
    have (``autovacuum_vacuum_max_threshold`` before PostgreSQL 18) keeps its meaning of none."""
    rows = conn.exec_driver_sql(_SETTINGS, {"names": list(_RULES.values())})
    found = {str(name): float(setting) for name, setting in rows}
    read: dict[str, Any] = {field: found[name] for field, name in _RULES.items() if name in found}
    return AutovacuumRules(**read)


def vacuum_and_analyze(conn: Connection, vacuum: Sequence[str] = ()) -> dict[str, Any]:
    """What autovacuum would do now, done on ``conn`` (PostgreSQL, in autocommit): ``VACUUM``
    of the service's tables whose dead rows (or rows inserted since their last VACUUM) passed
    the autovacuum thresholds, and of ``vacuum`` (tables the caller deleted rows from),
    whatever their counts; ``ANALYZE`` of those whose changes since their last ANALYZE passed
    theirs, and of any never analyzed. Both in one ``VACUUM (ANALYZE)`` where a table is due
    for both. The thresholds are the server's settings, or a table's own storage parameters
    where it has them; a table whose ``autovacuum_enabled`` is off is not touched, not even
    when it is in ``vacuum`` (``left``). ``TRUNCATE false``: the heap is not cut back, which
    would take the table's exclusive lock; the pages VACUUM frees are reused.

    Until round 61 every run vacuumed ``feed``, ``alert`` and ``delivery`` and analyzed every
    other table: its time grew with what the tables held, not with what changed (1.4-1.7 s a
    minute on a benchmark run's database of 837,000 articles, 0.2-0.3 s this way;
    docs/performance-history.md, round 61)."""
    from sqlmodel import SQLModel

    from feedwatch import models  # noqa: F401 - registers the tables

    started = time.monotonic()
    quote = conn.dialect.identifier_preparer.quote
    names = [t.name for t in SQLModel.metadata.sorted_tables]
    due_vacuum, analyzed, left = autovacuum_rules(conn).due(table_activity(conn, names))
    vacuumed = [*due_vacuum, *(name for name in vacuum if name not in due_vacuum and name not in left)]
    for name in vacuumed:
        options = "ANALYZE, TRUNCATE false" if name in analyzed else "TRUNCATE false"
        conn.exec_driver_sql(f"VACUUM ({options}) {quote(name)}")
    alone = [name for name in analyzed if name not in vacuumed]
    if alone:
        conn.exec_driver_sql("ANALYZE " + ", ".join(map(quote, alone)))
    return {
        "vacuumed": vacuumed,
        "analyzed": analyzed,
        "left": left,
        "seconds": round(time.monotonic() - started, 3),
    }
