"""The story lookup is one grouped query: the same answers on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import event, select
from sqlmodel import Session, col
from support.settings import database_settings
from support.stories import add_article, add_copy, add_feed, add_story, record_story

from feedwatch import db, store, stories
from feedwatch.models import Alert, Feed, StoryBand, StoryCopy, StoryKeys

NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
LEAD = "Russian and Azerbaijani ministers met in Moscow to discuss transport links and the border"
POLICY = stories.StoryPolicy(window=timedelta(hours=48), threshold=0.6)


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


def _find_one(session: Session, sig: stories.Signature) -> tuple[int, float] | None:
    """The single-article lookup as it was before ``settle`` (its own query, not ``_Stories``),
    read from every story's keys without an index (on both databases): the alerts of the window
    sharing a key, in id order, and whether a title key was one of them; the first whose MinHash
    agrees enough, or whose title key collided."""
    rows = session.execute(
        select(StoryKeys.alert_id, StoryKeys.band_keys)
        .where(col(StoryKeys.created_at) >= NOW - POLICY.window)
        .order_by(col(StoryKeys.alert_id))
    ).all()
    candidates = [
        (alert_id, any(key.startswith("t:") for key in shared))
        for alert_id, band_keys in rows
        if (shared := set(band_keys) & set(sig.keys))
    ]
    mine = np.asarray(sig.hashvalues, dtype=np.uint32)
    for alert_id, by_title in candidates:
        theirs = np.asarray(session.get_one(Alert, alert_id).minhash, dtype=np.uint32)
        score = int(np.count_nonzero(theirs == mine)) / len(mine) if len(theirs) == len(mine) else 0.0
        if score >= POLICY.threshold or by_title:
            return alert_id, score
    return None


def _sequential(session: Session, flagged: list[stories.Flagged]) -> list[int | None]:
    """The reference: one article at a time, as the pipeline decided before ``settle`` (a lookup
    that sees the bands of every alert made before it, then an alert and its bands, or a copy)."""
    out: list[int | None] = []
    for f in flagged:
        found = _find_one(session, f.sig)
        if found is not None:
            add_copy(session, found[0], f.article_id, f.feed_id, found[1], NOW)
            out.append(None)
            continue
        alert_id = store.create_alerts(session, [(f.article_id, f.topics, f.sig.hashvalues)], NOW)[
            f.article_id
        ]
        record_story(session, alert_id, f.sig, NOW)
        out.append(alert_id)
    return out


def _outcome(session: Session, flagged: list[stories.Flagged], result: list[int | None]) -> list[Any]:
    """Per article: ``"alert"``, or the article whose alert it was filed under as a copy, with
    the similarity (ids differ between runs; articles do not)."""
    alert_article = {a: b for a, b in session.execute(select(Alert.id, Alert.article_id))}
    copies = {
        article_id: (alert_article[alert_id], round(score, 3))
        for alert_id, article_id, score in session.execute(
            select(StoryCopy.alert_id, StoryCopy.article_id, StoryCopy.similarity)
        )
    }
    return ["alert" if r is not None else copies[f.article_id] for f, r in zip(flagged, result, strict=True)]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_batch_settles_as_one_article_at_a_time_would_in_a_few_statements(
    backend: str, tmp_path: Path
) -> None:
    """Stored stories, stories the batch starts and copies of both (by text and by headline),
    shuffled: ``settle`` decides every article as the one-at-a-time reference does, and its
    statements do not grow with the articles (the reference makes 2-4 per article)."""
    rng = random.Random(7)
    bodies = [f"{LEAD}. Topic {n}: " + f"detail{n} " * 60 for n in range(8)]
    titles = [f"Ministers of both countries discuss corridor number {n} in Moscow today" for n in range(8)]
    with database_settings(backend, tmp_path) as settings:
        with db.session_scope(settings) as session:
            feed = add_feed(session)
            # Stored stories: bodies 0-2; the batch starts 3-7.
            old = [
                add_story(session, feed, f"s{n}", titles[n], bodies[n], NOW - timedelta(hours=3))
                for n in range(3)
            ]
            stored = {a for (a,) in session.execute(select(Alert.article_id).where(col(Alert.id).in_(old)))}
            picks = [(rng.randrange(8), rng.choice(["text", "title", "both"])) for _ in range(40)]
            flagged = []
            for k, (n, how) in enumerate(picks):
                title = titles[n] if how != "text" else f"Report {k}"
                body = bodies[n] if how != "title" else "Teaser."
                article = add_article(session, feed, f"a{k}", title, NOW)
                assert article.id is not None and feed.id is not None
                sig = stories.signature(title, body)
                flagged.append(stories.Flagged(article.id, feed.id, ["russia_azerbaijan"], sig))
        runs = []
        for decide in (_sequential, None):
            with db.session_scope(settings) as session:
                statements: list[str] = []
                engine = session.get_bind()

                def spy(*args: Any, seen: list[str] = statements) -> None:
                    seen.append(args[2])

                event.listen(engine, "before_cursor_execute", spy)
                try:
                    if decide is None:
                        result = stories.settle(session, flagged, NOW, POLICY)
                    else:
                        result = decide(session, flagged)
                finally:
                    event.remove(engine, "before_cursor_execute", spy)
                runs.append((_outcome(session, flagged, result), len(statements)))
                session.rollback()
    (reference, by_one), (batch, by_batch) = runs
    assert batch == reference
    assert {"alert"} < set(map(str, batch))  # alerts and copies both
    assert any(o != "alert" and o[0] in stored for o in batch)  # copies of stored stories
    assert any(o != "alert" and o[0] not in stored for o in batch)  # copies of the batch's own
    # The batch: the candidates, their MinHash values, the alerts, the stories' keys, the copies;
    # on SQLite also the bands (two statements: it takes fewer parameters a statement). On
    # PostgreSQL the alerts and the keys go by COPY (store.copy_rows), each in a savepoint: its
    # SAVEPOINT and RELEASE are counted here, its nextval and COPY (the raw cursor's) are not.
    assert by_one >= 2 * len(flagged) and by_batch <= 7


def test_an_article_repeating_a_stored_story_and_one_the_batch_starts_joins_the_stored_one(
    session: Session, feed: Feed
) -> None:
    """Earliest first: stored alerts come before the batch's own stories, as their ids do."""
    common = " ".join(f"common{n}" for n in range(200))
    stored_text = common + " " + " ".join(f"stored{n}" for n in range(80))
    other_text = common + " " + " ".join(f"other{n}" for n in range(80))
    stored = add_story(session, feed, "s", "Stored", stored_text, NOW - timedelta(hours=1))
    other, repeat = stories.signature("Other", other_text), stories.signature("Repeat", common)
    # The premise, on the actual signatures: "other" starts its own story; "repeat" copies both.
    stored_sig = stories.signature("Stored", stored_text)
    assert stories.similarity(other.hashvalues, stored_sig.hashvalues) < POLICY.threshold
    assert stories.similarity(repeat.hashvalues, stored_sig.hashvalues) >= POLICY.threshold
    assert stories.similarity(repeat.hashvalues, other.hashvalues) >= POLICY.threshold
    assert feed.id is not None
    articles = [add_article(session, feed, key, key, NOW) for key in ("other", "repeat")]
    flagged = [
        stories.Flagged(a.id or 0, feed.id, ["russia_azerbaijan"], sig)
        for a, sig in zip(articles, (other, repeat), strict=True)
    ]
    new_alert, copy = stories.settle(session, flagged, NOW, POLICY)
    assert new_alert is not None and copy is None
    filed = session.execute(select(StoryCopy.alert_id).where(col(StoryCopy.article_id) == articles[1].id))
    assert filed.scalar_one() == stored


def test_a_story_keeps_its_keys_in_one_row_and_sqlite_indexes_them_one_row_each(
    session: Session, feed: Feed
) -> None:
    """Migration 0011: PostgreSQL finds stories through the GIN index on ``storykeys.band_keys``
    and writes no band rows; SQLite, which has no inverted index, writes them as well."""
    text = f"{LEAD}. " + "detail " * 60
    alert_id = add_story(session, feed, "k1", "A headline long enough to be a key of its own", text, NOW)
    sig = stories.signature("A headline long enough to be a key of its own", text)
    assert len(sig.keys) == stories.BANDS + 1  # the title key too
    rows = session.execute(select(StoryKeys.alert_id, StoryKeys.band_keys)).all()
    assert [(a, list(k)) for a, k in rows] == [(alert_id, sig.keys)]
    bands = session.execute(select(StoryBand.key).where(col(StoryBand.alert_id) == alert_id)).scalars().all()
    postgres = session.get_bind().dialect.name == "postgresql"
    assert sorted(bands) == ([] if postgres else sorted(sig.keys))
    found = stories.find_story(session, sig, NOW, POLICY)
    assert found is not None and found[0] == alert_id


def test_prune_keys_deletes_the_keys_of_stories_past_the_window_and_finds_the_rest(
    session: Session, feed: Feed
) -> None:
    """A story's keys go once it is older than the window and the margin; its alert stays, and
    the stories of the window are found as before. SQLite's band rows go with the keys."""
    text = f"{LEAD}. Topic: " + "detail " * 60
    gone = add_story(
        session, feed, "k1", "Old", text, NOW - POLICY.window - stories.PRUNE_MARGIN - timedelta(minutes=1)
    )
    margin = add_story(
        session, feed, "k2", "In the margin", text, NOW - POLICY.window - timedelta(minutes=30)
    )
    recent = add_story(session, feed, "k3", "Recent", text, NOW - timedelta(hours=1))
    copy = stories.signature("Recent (AFP)", text)
    found_before = stories.find_story(session, copy, NOW, POLICY)

    assert stories.prune_keys(session, NOW, POLICY) == 1
    assert stories.prune_keys(session, NOW, POLICY) == 0
    kept = session.execute(select(StoryKeys.alert_id).order_by(col(StoryKeys.alert_id))).scalars().all()
    assert kept == [margin, recent]
    bands = set(session.execute(select(StoryBand.alert_id)).scalars().all())
    assert gone not in bands
    assert bands == (set() if session.get_bind().dialect.name == "postgresql" else {margin, recent})
    assert session.get(Alert, gone) is not None
    assert stories.find_story(session, copy, NOW, POLICY) == found_before
    assert found_before is not None and found_before[0] == recent  # the margin is outside the window
