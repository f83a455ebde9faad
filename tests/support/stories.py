"""Rows for story tests: a feed, an article, a stored story (article + alert + its bands), and a
draft as the pipeline's normalize step leaves it."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from feedwatch import stories
from feedwatch.models import Alert, Article, Feed, StoryCopy
from feedwatch.normalize import ArticleDraft


def add_feed(session: Session, name: str = "A", url: str = "http://a/") -> Feed:
    feed = Feed(config_url=url, url=url, name=name)
    session.add(feed)
    session.flush()
    return feed


def add_article(session: Session, feed: Feed, key: str, title: str, at: datetime) -> Article:
    assert feed.id is not None
    article = Article(identity_key=key, feed_id=feed.id, title=title, published_at=at, content_hash=key)
    session.add(article)
    session.flush()
    return article


def add_story(session: Session, feed: Feed, key: str, title: str, text: str, at: datetime) -> int:
    """An alerted article whose story bands are recorded, as the pipeline leaves it; its alert id."""
    article = add_article(session, feed, key, title, at)
    sig = stories.signature(title, text)
    alert = Alert(article_id=article.id or 0, topics=["russia_azerbaijan"], minhash=sig.hashvalues)
    session.add(alert)
    session.flush()
    assert alert.id is not None
    record_story(session, alert.id, sig, at)
    return alert.id


def record_story(session: Session, alert_id: int, sig: stories.Signature, at: datetime) -> None:
    """Store a stored alert's story keys, as ``stories.settle`` does for the alerts it makes."""
    stories.record_keys(session, [(alert_id, sig)], at)


def add_copy(
    session: Session, alert_id: int, article_id: int, feed_id: int, score: float, at: datetime
) -> None:
    """File an article under a story's alert as a copy, as ``stories.settle`` does."""
    session.add(
        StoryCopy(alert_id=alert_id, article_id=article_id, feed_id=feed_id, similarity=score, created_at=at)
    )
    session.flush()


def draft(key: str, title: str, text: str | None = None) -> ArticleDraft:
    """A new English article's draft: its identity and content hash ``key``, its text ``title``
    unless given, published 2026-11-30 09:00 UTC."""
    return ArticleDraft(
        identity_key=key,
        guid=None,
        url=f"http://127.0.0.1/{key}",
        title=title,
        summary="",
        text=title if text is None else text,
        author=None,
        language="en",
        published_at=datetime(2026, 11, 30, 9, 0),
        published_from_feed=True,
        content_hash=key,
    )
