"""The story lookup is one grouped query: the same answers on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session
from support.services import postgres_database

from feedwatch import db, stories
from feedwatch.models import Alert, Article, Feed
from feedwatch.settings import Settings

NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
LEAD = "Russian and Azerbaijani ministers met in Moscow to discuss transport links and the border"
POLICY = stories.StoryPolicy(window=timedelta(hours=48), threshold=0.6)


@pytest.fixture(params=["sqlite", "postgresql"])
def session(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Session]:
    if request.param == "sqlite":
        settings = Settings(home=tmp_path)
        db.upgrade(settings)
        with db.session_scope(settings) as s:
            yield s
        db.dispose_engines()
        return
    with postgres_database() as url:
        settings = Settings(home=tmp_path, database_url=url)
        db.upgrade(settings)
        with db.session_scope(settings) as s:
            yield s


def _alert(session: Session, feed: Feed, n: int, title: str, text: str, at: datetime) -> int:
    assert feed.id is not None
    article = Article(
        identity_key=f"k{n}", feed_id=feed.id, title=title, published_at=at, content_hash=f"h{n}"
    )
    session.add(article)
    session.flush()
    sig = stories.signature(title, text)
    alert = Alert(article_id=article.id or 0, topics=["russia_azerbaijan"], minhash=sig.hashvalues)
    session.add(alert)
    session.flush()
    assert alert.id is not None
    stories.record_story(session, alert.id, sig, at)
    session.flush()
    return alert.id


def test_earliest_matching_alert_wins_among_colliding_candidates(session: Session) -> None:
    feed = Feed(config_url="http://a/", url="http://a/", name="A")
    session.add(feed)
    session.flush()
    # Several stories share the lead (their bands collide) but differ after it.
    ids = [
        _alert(session, feed, n, f"Story {n}", f"{LEAD}. Topic {n}: " + f"detail{n} " * 60, NOW)
        for n in range(5)
    ]
    old = _alert(session, feed, 9, "Old", f"{LEAD}. Topic 3: " + "detail3 " * 60, NOW - timedelta(hours=72))
    copy = stories.signature("Story 3 (AFP)", f"{LEAD}. Topic 3: " + "detail3 " * 60)
    found = stories.find_story(session, copy, NOW + timedelta(hours=1), POLICY)
    assert found is not None and found[0] == ids[3] and found[0] != old
    unrelated = stories.signature("Weather", "Heavy rain is expected over the weekend in Baku.")
    assert stories.find_story(session, unrelated, NOW, POLICY) is None


def test_same_long_headline_is_a_copy_whatever_the_text(session: Session) -> None:
    feed = Feed(config_url="http://a/", url="http://a/", name="A")
    session.add(feed)
    session.flush()
    title = "Lavrov and Bayramov hold talks in Moscow on Monday"
    first = _alert(session, feed, 1, title, LEAD, NOW)
    found = stories.find_story(session, stories.signature(title, "Teaser."), NOW, POLICY)
    assert found is not None and found[0] == first


def test_a_repeated_lookup_reads_only_the_bands(session: Session) -> None:
    """PostgreSQL: the candidates' MinHash values are remembered (they never change); SQLite reads
    them every time (a rolled-back rowid can name another alert later)."""
    from sqlalchemy import event

    feed = Feed(config_url="http://a/", url="http://a/", name="A")
    session.add(feed)
    session.flush()
    ids = [
        _alert(session, feed, n, f"Story {n}", f"{LEAD}. Topic {n}: " + f"detail{n} " * 60, NOW)
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
