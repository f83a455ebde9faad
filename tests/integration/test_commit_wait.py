"""On PostgreSQL a poll batch's commit does not wait for the disk; the delivery claim does.

``Settings.poll_synchronous_commit`` (off by default) lets a poll batch commit without waiting
for its WAL to be flushed. That is safe only because nothing leaves the service on the strength
of such a commit alone: the alerts worker claims each delivery in a transaction that writes and
commits synchronously before it sends, and flushing that commit flushes every earlier one. These
tests run the real ``pipeline.poll_feeds`` against a local HTTP server and ``alerts.deliver_many``
to a JSONL file, and read ``synchronous_commit`` at every commit of a transaction that wrote.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session
from sqlmodel import select
from support.feeds import item, rss
from support.services import FeedServer, Route
from support.settings import database_settings

from feedwatch import alerts, db, pipeline, store
from feedwatch.channels.jsonl import JsonlChannel
from feedwatch.models import Alert, Feed
from feedwatch.settings import Settings
from feedwatch.sources import FeedSpec
from feedwatch.timeutil import utcnow

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SEED = "Lavrov and Bayramov discussed the peace treaty with Armenia"


@dataclass(frozen=True)
class Commit:
    synchronous: str  # the transaction's synchronous_commit as it committed
    lines_sent: int  # lines in the JSONL channel's file at that moment


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    with database_settings("postgresql", tmp_path) as s:
        yield s.model_copy(update={"allow_private_networks": True, "per_host_min_gap_seconds": 0.0})


@pytest.fixture
def commits(tmp_path: Path) -> Iterator[list[Commit]]:
    """Every commit of a transaction that wrote (it has a transaction id), in order."""
    seen: list[Commit] = []
    sent = tmp_path / "alerts.jsonl"

    def before_commit(session: Session) -> None:
        setting, wrote = session.execute(
            text("SELECT current_setting('synchronous_commit'), pg_current_xact_id_if_assigned() IS NOT NULL")
        ).one()
        if wrote:
            seen.append(Commit(setting, len(sent.read_text().splitlines()) if sent.exists() else 0))

    event.listen(Session, "before_commit", before_commit)
    try:
        yield seen
    finally:
        event.remove(Session, "before_commit", before_commit)


def poll(settings: Settings, server: FeedServer, name: str, commits: list[Commit]) -> list[int]:
    """Poll a new feed holding one flagged item and one other; the alert ids it published. Only
    the poll's commits are left in ``commits``."""
    server.routes[f"/{name}.xml"] = Route(
        rss(
            [
                item(
                    f"https://example.org/{name}/1", SEED, "Talks in Moscow.", f"https://example.org/{name}/1"
                ),
                item(f"https://example.org/{name}/2", "Weather", "Rain.", f"https://example.org/{name}/2"),
            ]
        )
    )
    url = server.url(f"/{name}.xml")
    with db.session_scope(settings) as session:
        store.sync_feeds(session, [FeedSpec(url=url, interval_minutes=10)], utcnow())
        feed_id = session.exec(select(Feed.id).where(Feed.config_url == url)).one()
    assert feed_id is not None
    commits.clear()
    reports = pipeline.poll_feeds(pipeline.Context(settings, rng=random.Random(7)), [feed_id])
    assert [(r.outcome, r.new) for r in reports] == [("ok", 2)]
    return [a for r in reports for a in r.alert_ids]


def test_the_poll_commits_without_waiting_and_the_claim_waits_before_the_send(
    settings: Settings, server: FeedServer, commits: list[Commit], tmp_path: Path
) -> None:
    alert_ids = poll(settings, server, "a", commits)
    assert len(alert_ids) == 1
    # The poll batch's one writing transaction: articles, match, alert and the feed's state.
    assert [c.synchronous for c in commits] == ["off"]

    commits.clear()
    channel = JsonlChannel(tmp_path / "alerts.jsonl")
    report = alerts.deliver_many(alert_ids, [channel], settings, utcnow)
    assert [r.status for r in report.reports] == ["delivered"]
    assert len((tmp_path / "alerts.jsonl").read_text().splitlines()) == 1
    # The claim (nothing sent yet) commits synchronously, then the result is recorded.
    assert commits[0] == Commit("on", 0)
    assert all(c.synchronous == "on" for c in commits)


def test_the_setting_makes_the_poll_wait(
    settings: Settings, server: FeedServer, commits: list[Commit]
) -> None:
    poll(settings.model_copy(update={"poll_synchronous_commit": True}), server, "b", commits)
    assert [c.synchronous for c in commits] == ["on"]


def test_ids_whose_poll_was_taken_back_are_skipped(settings: Settings, tmp_path: Path) -> None:
    """A crash that takes back a poll batch leaves the alert and article ids it published
    without rows: the alerts worker and the full-text stage pass over them."""
    with db.session_scope(settings) as session:
        assert session.exec(select(Alert)).first() is None
    channel = JsonlChannel(tmp_path / "alerts.jsonl")
    report = alerts.deliver_many([1000], [channel], settings, utcnow)
    assert [(r.alert_id, r.status, r.sent) for r in report.reports] == [(1000, "unknown", [])]
    assert report.retry_ids == [] and not (tmp_path / "alerts.jsonl").exists()
    assert pipeline.process_articles(pipeline.Context(settings), [1000]) == []
