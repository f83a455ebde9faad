"""``feedwatch.db.upkeep``: VACUUM and ANALYZE where PostgreSQL's autovacuum is off, on the real
PostgreSQL of this machine; nothing on SQLite."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from support import polls
from support.plans import reads
from support.services import wait_for
from support.settings import database_settings

from feedwatch import db

CLAIM_READ = (
    "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT id FROM feed"
    " WHERE enabled AND state <> 'disabled' AND next_check_at <= :now ORDER BY next_check_at LIMIT 1"
)


def _claim_buffers(engine: Engine, now: datetime) -> int:
    """The buffers the tick's claim reads to find the first due feed (its read, without the
    locks): every index entry before it, dead or alive, is stepped over."""
    with engine.connect() as conn:
        plan = conn.execute(text(CLAIM_READ), {"now": now}).scalar_one()
    plan = plan if isinstance(plan, list) else json.loads(plan)
    return int(plan[0]["Plan"]["Shared Hit Blocks"]) + int(plan[0]["Plan"]["Shared Read Blocks"])


def _never_analyzed(engine: Engine) -> list[str]:
    """The service's tables PostgreSQL holds no row estimate of (``reltuples`` -1: never
    vacuumed or analyzed)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT relname FROM pg_class WHERE relkind = 'r' AND reltuples < 0"
                " AND relnamespace = 'public'::regnamespace AND relname <> 'alembic_version' ORDER BY relname"
            )
        )
        return [r[0] for r in rows]


def _dead_rows(engine: Engine, table: str) -> int:
    """The dead rows PostgreSQL's statistics count in ``table``: what the upkeep decides by. A
    backend sends its counts a second or so after its transaction ends."""
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = :t"), {"t": table}
        ).scalar_one()
    return int(found)


def _upkeep(engine: Engine, vacuum: tuple[str, ...] = ()) -> dict[str, Any]:
    """The upkeep of the seeded database. ``polls.seed`` turns the feed table's
    ``autovacuum_enabled`` off, to keep a server's own autovacuum (where it is on) away from it,
    and the upkeep leaves such a table alone as autovacuum does: so the option is lifted first.
    (Where the server's autovacuum is on it could take the table in between: not on this
    project's machines, where it is off.)"""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ALTER TABLE feed RESET (autovacuum_enabled)")
        try:
            return db.vacuum_and_analyze(conn, vacuum)
        finally:
            conn.exec_driver_sql("ALTER TABLE feed SET (autovacuum_enabled = false)")


def _set(engine: Engine, table: str, options: str) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {table} SET ({options})")


def test_vacuum_and_analyze_clears_the_dead_entries_under_the_claim(tmp_path: Path) -> None:
    """Polled 30 rounds with nothing vacuuming, the claim's read steps over every dead version's
    index entry; after the upkeep it reads what the live rows take. And every table has been
    analyzed, so plans are made with its size known."""
    with database_settings("postgresql", tmp_path) as settings:
        engine = db.get_engine(settings)
        ids = polls.seed(engine, 300)
        now = polls.poll(engine, ids, 30)
        assert "article" in _never_analyzed(engine)
        wait_for(lambda: _dead_rows(engine, "feed") > 9_000, 30, "the polls' dead rows counted")
        _claim_buffers(engine, now)  # its first read marks the dead entries it meets: the claims' state
        before = _claim_buffers(engine, now)
        done = _upkeep(engine)
        after = _claim_buffers(engine, now)
        assert _never_analyzed(engine) == []
    assert done["vacuumed"] == ["feed"]  # the only table with dead rows
    assert {"feed", "article", "match", "sighting", "storykeys", "alert", "delivery"} <= set(done["analyzed"])
    assert after * 5 < before, (before, after)


def test_the_upkeep_does_what_changed_not_what_is_stored(tmp_path: Path) -> None:
    """Round 61: a run vacuums and analyzes only the tables whose changes passed the server's
    autovacuum thresholds (and any never analyzed). Run again with nothing changed, it does
    nothing; after the feeds were polled, it vacuums and analyzes their table alone."""
    with database_settings("postgresql", tmp_path) as settings:
        engine = db.get_engine(settings)
        ids = polls.seed(engine, 300)
        wait_for(lambda: _dead_rows(engine, "feed") >= 300, 30, "the seed's dead rows counted")
        first = _upkeep(engine)
        assert first["vacuumed"] == ["feed"]  # the seed wrote every row twice
        assert _never_analyzed(engine) == []
        again = _upkeep(engine)
        polls.poll(engine, ids, 5)  # each poll's state UPDATE moves next_check_at: no HOT update
        wait_for(lambda: _dead_rows(engine, "feed") >= 1_500, 30, "the polls' dead rows counted")
        polled = _upkeep(engine)
    assert (again["vacuumed"], again["analyzed"]) == ([], [])
    assert (polled["vacuumed"], polled["analyzed"]) == (["feed"], ["feed"])


def test_a_tables_own_storage_parameters_rule_it(tmp_path: Path) -> None:
    """Where an operator set a table's own ``autovacuum_*`` storage parameters, the upkeep reads
    them as autovacuum does, in place of the server's settings: polled five rounds, the feed
    table's 1,500 dead rows of 300 pass the server's 50 + 20 % but not its own threshold of
    100,000, so it is analyzed, not vacuumed; under its own 0 + 50 % they are past it. With
    ``autovacuum_enabled`` off it is left alone, even when the caller asks for its VACUUM (the
    pruned story keys' case)."""
    with database_settings("postgresql", tmp_path) as settings:
        engine = db.get_engine(settings)
        ids = polls.seed(engine, 300)
        wait_for(lambda: _dead_rows(engine, "feed") >= 300, 30, "the seed's dead rows counted")
        _upkeep(engine)
        polls.poll(engine, ids, 5)
        wait_for(lambda: _dead_rows(engine, "feed") >= 1_500, 30, "the polls' dead rows counted")
        _set(engine, "feed", "autovacuum_vacuum_threshold = 100000")
        own_threshold = _upkeep(engine)
        _set(engine, "feed", "autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0.5")
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            left = db.vacuum_and_analyze(conn, vacuum=("feed",))  # the seed's autovacuum_enabled = false
        dead_after = _dead_rows(engine, "feed")
        own_scale = _upkeep(engine)
    assert (own_threshold["vacuumed"], own_threshold["analyzed"], own_threshold["left"]) == ([], ["feed"], [])
    assert (left["vacuumed"], left["analyzed"], left["left"]) == ([], [], ["feed"])
    assert dead_after >= 1_500  # nothing vacuumed it
    assert own_scale["vacuumed"] == ["feed"]  # 1,500 dead past 0 + 0.5 × 300


@pytest.mark.parametrize(
    ("options", "rules"),
    [
        ((), db.AutovacuumRules()),
        (
            ("autovacuum_vacuum_threshold=10", "autovacuum_vacuum_scale_factor=0.01", "fillfactor=50"),
            db.AutovacuumRules(vacuum_threshold=10, vacuum_scale=0.01),
        ),
        (
            ("autovacuum_vacuum_insert_threshold=-1", "autovacuum_analyze_scale_factor=0.5"),
            db.AutovacuumRules(insert_threshold=-1, analyze_scale=0.5),
        ),
        (("autovacuum_vacuum_max_threshold=5000",), db.AutovacuumRules(vacuum_max_threshold=5000)),
        *(
            (("autovacuum_enabled=" + off,), db.AutovacuumRules(enabled=False))
            for off in ("off", "false", "f", "no", "0")
        ),
        *((("autovacuum_enabled=" + on,), db.AutovacuumRules()) for on in ("on", "true", "t", "Yes", "1")),
    ],
)
def test_a_tables_parameters_replace_the_servers(options: tuple[str, ...], rules: db.AutovacuumRules) -> None:
    """``pg_class.reloptions`` as PostgreSQL stores them (as the operator wrote them): each
    ``autovacuum_*`` parameter replaces the setting of its name; others are not autovacuum's."""
    assert db.AutovacuumRules().for_table(options) == rules


def test_a_table_with_autovacuum_disabled_is_never_due() -> None:
    quiet = db.TableActivity("quiet", -1, 0, 0, 0, ("autovacuum_enabled=off",))
    busy = db.TableActivity("busy", 1_000, 900, 900, 900, ("autovacuum_enabled=false",))
    assert db.AutovacuumRules().due([quiet, busy]) == ([], [], ["quiet", "busy"])


def test_postgresql_18s_cap_on_the_vacuum_threshold() -> None:
    """``autovacuum_vacuum_max_threshold`` (PostgreSQL 18): a big table is due at the cap's dead
    rows, however far under 20 % they are; -1 (and the server before 18) sets no cap."""
    big = db.TableActivity("big", 10_000_000, 100_001, 0, 0)
    assert db.AutovacuumRules(vacuum_max_threshold=100_000).due([big])[0] == ["big"]
    assert db.AutovacuumRules().due([big])[0] == []


@pytest.mark.parametrize(
    ("activity", "vacuum", "analyze"),
    [
        # rows, dead, modified since ANALYZE, inserted since VACUUM
        ((1_000, 250, 150, 0), False, False),  # 250 dead of 1,000: under 50 + 0.2 × 1,000
        ((1_000, 251, 151, 0), True, True),
        ((1_000_000, 150_000, 90_000, 0), False, False),  # a big table: its scale rules
        ((1_000_000, 0, 0, 201_001), True, False),  # inserts alone: VACUUM (the visibility map)
        ((-1, 0, 0, 0), False, True),  # never analyzed: analyzed once, however quiet
        ((0, 51, 0, 0), True, False),
    ],
)
def test_a_table_is_due_past_autovacuums_thresholds(
    activity: tuple[int, int, int, int], vacuum: bool, analyze: bool
) -> None:
    """PostgreSQL's defaults: VACUUM past 50 + 0.2 × rows dead (or 1,000 + 0.2 × rows
    inserted), ANALYZE past 50 + 0.1 × rows changed."""
    rows, dead, modified, inserted = activity
    table = db.TableActivity("t", rows, dead, modified, inserted)
    due = db.AutovacuumRules().due([table])
    assert due == (["t"] if vacuum else [], ["t"] if analyze else [], [])
    no_inserts = db.AutovacuumRules(insert_threshold=-1).due([table])
    assert no_inserts[0] == (["t"] if vacuum and dead > 50 + 0.2 * max(rows, 0) else [])


def test_the_rules_are_the_servers(tmp_path: Path) -> None:
    """Each threshold is read from the server setting of its name, as ``SHOW`` gives it. (The
    settings are the server's, reloaded on SIGHUP: no test may change them, so on a server at
    its defaults this cannot tell the readings from PostgreSQL's defaults written in.)"""
    with database_settings("postgresql", tmp_path) as settings, db.get_engine(settings).connect() as conn:
        rules = db.autovacuum_rules(conn)
        shown = {
            name: float(conn.execute(text(f"SHOW autovacuum_{name}")).scalar_one())
            for name in (
                "vacuum_threshold",
                "vacuum_scale_factor",
                "vacuum_insert_threshold",
                "vacuum_insert_scale_factor",
                "analyze_threshold",
                "analyze_scale_factor",
            )
        }
    assert (
        rules.vacuum_threshold,
        rules.vacuum_scale,
        rules.insert_threshold,
        rules.insert_scale,
        rules.analyze_threshold,
        rules.analyze_scale,
    ) == tuple(shown.values())


def test_the_task_runs_the_upkeep_only_where_autovacuum_is_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The worker's task, on the process's settings, whatever this server is set to (a server
    setting, not one a test may change): the upkeep runs exactly when ``SHOW autovacuum`` says
    off."""
    from support.services import postgres_database
    from support.settings import migrated_settings

    from workers import tasks

    with postgres_database() as url, migrated_settings(monkeypatch, tmp_path, DATABASE_URL=url) as settings:
        with db.get_engine(settings).connect() as conn:
            off = conn.execute(text("SHOW autovacuum")).scalar() == "off"
        done = tasks.db_upkeep()
    assert done["story_keys_pruned"] == 0  # a new database: no story yet
    assert (done["vacuum"] is not None) == off
    if done["vacuum"] is not None:  # a new database: nothing to vacuum, every table to analyze
        assert done["vacuum"]["vacuumed"] == []
        assert {"feed", "article", "alert", "delivery"} <= set(done["vacuum"]["analyzed"])


def _lookup_plan(engine: Engine, sigs: list[str], since: datetime) -> dict[str, Any]:
    """The story lookup's own statement (``stories._STORIES_BY_SIGNATURE``) under ``EXPLAIN
    (ANALYZE, BUFFERS)``: its bitmap heap scan's node (the scan of one signature's keys)."""
    from sqlalchemy.dialects import postgresql

    from feedwatch import stories

    sql = str(stories._STORIES_BY_SIGNATURE.compile(dialect=postgresql.psycopg.dialect()))  # type: ignore[no-untyped-call]
    with engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, {"b_sigs": sigs, "b_since": since})
        plan = cursor.fetchone()[0]
    return dict(next(n for n in reads(plan[0]["Plan"]) if n["Node Type"] == "Bitmap Heap Scan"))


def test_the_upkeep_prunes_the_story_keys_the_lookup_read_to_drop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Round 49: the GIN index hands the lookup every story that ever shared a key, and the
    window's condition drops the old ones only after their rows are read. 300 stories past the
    window sharing the lead of the one being looked up: read and dropped on every lookup until
    the upkeep deletes their keys, and their index entries are gone once VACUUM has run."""
    from datetime import UTC, timedelta

    from sqlmodel import Session
    from support.services import postgres_database
    from support.settings import migrated_settings
    from support.stories import add_feed, add_story

    from feedwatch import stories
    from workers import tasks

    now = datetime.now(UTC)
    policy = stories.StoryPolicy()
    lead = "Russian and Azerbaijani ministers met in Moscow to discuss transport links and the border. "
    with postgres_database() as url, migrated_settings(monkeypatch, tmp_path, DATABASE_URL=url) as settings:
        engine = db.get_engine(settings)
        with Session(engine) as session:
            feed = add_feed(session)
            old = now - policy.window - timedelta(hours=3)
            for n in range(300):
                add_story(session, feed, f"old{n}", f"Old {n}", lead + f"item{n} " * 40, old)
            recent = add_story(session, feed, "new", "New", lead + "fresh " * 40, now - timedelta(hours=1))
            session.commit()
        sigs = [",".join(stories.signature("New (AFP)", lead + "fresh " * 40).keys)]
        since = now - policy.window
        before = _lookup_plan(engine, sigs, since)
        done = tasks.db_upkeep()
        after = _lookup_plan(engine, sigs, since)
        with engine.connect() as conn:
            off = conn.execute(text("SHOW autovacuum")).scalar() == "off"
            left = conn.execute(text("SELECT array_agg(alert_id) FROM storykeys")).scalar_one()
    print(f"\nstory lookup, 300 old stories: {before} -> {after}")
    assert done["story_keys_pruned"] == 300
    assert left == [recent]
    assert before["Actual Rows"] == 1 and after["Actual Rows"] == 1
    assert before["Rows Removed by Filter"] >= 100, before  # old stories read, then dropped
    assert after.get("Rows Removed by Filter", 0) == 0
    if off:  # the upkeep's VACUUM took their entries out of the index: their pages are not read
        assert "storykeys" in done["vacuum"]["vacuumed"]
        assert after["Exact Heap Blocks"] < before["Exact Heap Blocks"], (before, after)


def test_upkeep_does_nothing_on_sqlite(tmp_path: Path) -> None:
    with database_settings("sqlite", tmp_path) as settings:
        assert db.upkeep(settings) is None


def test_the_task_prunes_the_story_keys_on_sqlite_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Beat sends the upkeep on SQLite as well (the embedded mode): a story past its window loses
    its keys and its band rows, one of the window keeps them; there is nothing to vacuum."""
    from datetime import UTC, timedelta

    from sqlmodel import Session, select
    from support.settings import migrated_settings
    from support.stories import add_feed, add_story

    from feedwatch import stories
    from feedwatch.models import StoryBand, StoryKeys
    from workers import tasks

    now = datetime.now(UTC)
    text_ = "Russian and Azerbaijani ministers met in Moscow to discuss transport links. " * 5
    with migrated_settings(monkeypatch, tmp_path) as settings:
        assert settings.is_sqlite
        with Session(db.get_engine(settings)) as session:
            feed = add_feed(session)
            add_story(
                session, feed, "old", "Old", text_, now - stories.StoryPolicy().window - timedelta(hours=2)
            )
            recent = add_story(session, feed, "new", "New", text_, now - timedelta(hours=1))
            session.commit()
        done = tasks.db_upkeep()
        with Session(db.get_engine(settings)) as session:
            keys = session.exec(select(StoryKeys.alert_id)).all()
            bands = set(session.exec(select(StoryBand.alert_id)).all())
    assert done == {"story_keys_pruned": 1, "vacuum": None}
    assert keys == [recent] and bands == {recent}
