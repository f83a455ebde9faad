"""Feed documents for service tests: the seed article among unrelated items."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from sqlmodel import select

from feedwatch import db, pipeline, store
from feedwatch.models import Feed
from feedwatch.sources import FeedSpec
from feedwatch.timeutil import utcnow
from support.services import SHARED

SEED_TITLE = "Lavrov and Bayramov hold talks in Moscow"

UNRELATED = [
    ("Local team wins the cup after extra time", "The final ended 3-2 in front of a full stadium."),
    ("Heavy rain expected over the weekend", "Forecasters warn of flooding in low-lying districts."),
    ("New smartphone goes on sale", "The device has a larger screen and a faster processor."),
]


def seed_text() -> str:
    seeds = sorted((SHARED / "seeds").glob("*.txt")) if (SHARED / "seeds").is_dir() else []
    if seeds:
        return seeds[0].read_text(encoding="utf-8")
    # A faithful excerpt, so the service tests run on a clone without ../shared.
    return (
        "The meeting between Russian Foreign Minister Sergey Lavrov and his Azerbaijani counterpart "
        "Jeyhun Bayramov is taking place in Moscow on Monday. It is planned to discuss the state and "
        "prospects of bilateral cooperation as well as exchange opinions on the most pertinent aspects "
        "of the regional and international agenda, including the issues of normalizing the "
        "Azerbaijani-Armenian relations. An important topic is the course of the implementation of the "
        "trilateral agreements achieved by the Azerbaijani, Armenian and Russian leaders, the unblocking "
        "of transport ties, the delimitation of the border, the conclusion of a peace treaty."
    )


def item(guid: str, title: str, text: str, link: str, date: datetime | None = None) -> str:
    """An RSS item dated ``date``, else now (so its bytes change with the second it is built in:
    pass a date where bodies built at different moments must be equal)."""
    date_text = format_datetime(date or utcnow())
    return (
        f"<item><guid isPermaLink='false'>{escape(guid)}</guid><title>{escape(title)}</title>"
        f"<link>{escape(link)}</link><pubDate>{date_text}</pubDate>"
        f"<description>{escape(text)}</description></item>"
    )


def rss(items: list[str], title: str = "Test outlet") -> bytes:
    body = "".join(items)
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><link>http://example.org/</link>"
        f"<description>test</description>{body}</channel></rss>"
    ).encode()


def seed_feed(prefix: str = "t") -> bytes:
    items = [item(f"{prefix}-seed", SEED_TITLE, seed_text(), "https://example.org/news/lavrov-bayramov")]
    items += [
        item(f"{prefix}-{i}", title, text, f"https://example.org/news/{prefix}-{i}")
        for i, (title, text) in enumerate(UNRELATED)
    ]
    return rss(items)


def write_feeds_toml(path: Path, urls: list[str], interval_minutes: float = 0.05) -> Path:
    lines = []
    for i, url in enumerate(urls):
        lines += [
            "[[feeds]]",
            f'url = "{url}"',
            f'name = "Feed {i}"',
            f"interval_minutes = {interval_minutes}",
            # Pinned: service tests count polls at a fixed rhythm, not the adaptive schedule's.
            f"min_interval_minutes = {interval_minutes}",
            f"max_interval_minutes = {interval_minutes}",
            "",
        ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def add_feeds(ctx: pipeline.Context, urls: Sequence[str], **spec: Any) -> list[int]:
    """Feeds at ``urls`` (every 10 minutes unless ``spec`` says otherwise), added in one sync
    (a sync disables the configured feeds it does not list); their ids, in ``urls``' order."""
    specs = [FeedSpec(url=u, **{"interval_minutes": 10, **spec}) for u in urls]
    with db.session_scope(ctx.settings) as session:
        store.sync_feeds(session, specs, ctx.clock())
        ids = dict(session.exec(select(Feed.config_url, Feed.id)).all())
    return [int(ids[u]) for u in urls]
