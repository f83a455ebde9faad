"""The story lookup is one grouped query: the same answers on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session
from support.settings import database_settings
from support.stories import add_feed, add_story

from feedwatch import db, stories
from feedwatch.models import Feed

NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
LEAD = "Russian and Azerbaijani ministers met in Moscow to discuss transport links and the border"
POLICY = stories.StoryPolicy(window=timedelta(hours=48), threshold=0.6)


@pytest.fixture(params=["sqlite", "postgresql"])
def session(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Session]:
    with database_settings(request.param, tmp_path) as settings, db.session_scope(settings) as s:
        yield s


@pytest.fixture
def feed(session: Session) -> Feed:
    return add_feed(session)


def test_earliest_matching_alert_wins_among_colliding_candidates(session: Session, feed: Feed) -> None:
    # Several stories share the lead (their bands collide) but differ after it.
    ids = [
        add_story(session, feed, f"k{n}", f"Story {n}", f"{LEAD}. Topic {n}: " + f"detail{n} " * 60, NOW)
        for n in range(5)
    ]
    old = add_story(
        session, feed, "k9", "Old", f"{LEAD}. Topic 3: " + "detail3 " * 60, NOW - timedelta(hours=72)
    )
    copy = stories.signature("Story 3 (AFP)", f"{LEAD}. Topic 3: " + "detail3 " * 60)
    found = stories.find_story(session, copy, NOW + timedelta(hours=1), POLICY)
    assert found is not None and found[0] == ids[3] and found[0] != old
    unrelated = stories.signature("Weather", "Heavy rain is expected over the weekend in Baku.")
    assert stories.find_story(session, unrelated, NOW, POLICY) is None


def test_same_long_headline_is_a_copy_whatever_the_text(session: Session, feed: Feed) -> None:
    title = "Lavrov and Bayramov hold talks in Moscow on Monday"
    first = add_story(session, feed, "k1", title, LEAD, NOW)
    found = stories.find_story(session, stories.signature(title, "Teaser."), NOW, POLICY)
    assert found is not None and found[0] == first


def test_a_repeated_lookup_reads_only_the_bands(session: Session, feed: Feed) -> None:
    """PostgreSQL: the candidates' MinHash values are remembered (they never change); SQLite reads
    them every time (a rolled-back rowid can name another alert later)."""
    from sqlalchemy import event

    ids = [
        add_story(session, feed, f"k{n}", f"Story {n}", f"{LEAD}. Topic {n}: " + f"detail{n} " * 60, NOW)
        for n in range(3)
    ]
    copy = stories.signature("Story 2 (AFP)", f"{LEAD}. Topic 2: " + "detail2 " * 60)
    statements: list[str] = []
    engine = session.get_bind()
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        first = stories.find_story(session, copy, NOW, POLICY)
        second = stories.find_story(session, copy, NOW, POLICY)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert first == second and first is not None and first[0] == ids[2]
    per_lookup = 1 if engine.dialect.name == "postgresql" else 2
    assert len(statements) == 2 + per_lookup
