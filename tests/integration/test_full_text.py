"""The full-text stage against real pages served on 127.0.0.1, a real database and a real worker.

A feed carries items whose title and teaser only hint at a topic (candidates); their pages
wrap the story in navigation, ads, a sidebar and comments that name other topics. The item is
flagged only after extraction, for the topic the story is about, with a snippet from the body;
an unrelated candidate stays unflagged; failing pages fail with their class; a second delivery
of the same message changes nothing; the tick re-sends candidates whose message was lost.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, create_engine, select
from support.article_pages import (
    BODY_ONLY_EN,
    BODY_ONLY_HY,
    BODY_ONLY_RU,
    CANDIDATE_ONLY_EN,
    NAV_ONLY_PAGE,
    PLAIN_TITLE_EN,
    Story,
    render,
)
from support.feeds import item, rss
from support.services import (
    FeedServer,
    Route,
    ServiceProcess,
    feedwatch_cmd,
    postgres_database,
    redis_url,
    service_env,
    wait_for,
)

from feedwatch import db, pipeline, store
from feedwatch.db import session_scope
from feedwatch.models import Alert, Article, Feed, FullTextStatus, Match
from feedwatch.settings import Settings
from feedwatch.timeutil import to_utc, utcnow

pytestmark = [pytest.mark.integration, pytest.mark.services, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
BODY_ONLY = {
    BODY_ONLY_EN: "armenia_normalization",
    BODY_ONLY_RU: "russia_azerbaijan",
    BODY_ONLY_HY: "armenia_normalization",
}
REDIS_DB = 6


def _route(story: Story) -> Route:
    # The charset is only in the page's meta tag, as on many Russian sites.
    return Route(render(story), content_type="text/html")


def serve_site(server: FeedServer) -> None:
    """Two feeds: ``/news.xml`` (candidates by title) and ``/full.xml`` (a full_text feed)."""
    for story in (*BODY_ONLY, CANDIDATE_ONLY_EN, PLAIN_TITLE_EN):
        server.routes[f"/a/{story.key}"] = _route(story)
    server.routes["/a/json"] = Route(b'{"error": "not a page"}', content_type="application/json")
    server.routes["/a/menu"] = Route(NAV_ONLY_PAGE, content_type="text/html")
    items = [
        item(s.key, s.title, s.teaser, server.url(f"/a/{s.key}")) for s in (*BODY_ONLY, CANDIDATE_ONLY_EN)
    ]
    # Candidates whose pages fail: wrong media type, nothing but a menu, gone.
    items += [
        item("json", "Armenia: live updates", "Minute by minute.", server.url("/a/json")),
        item("menu", "Russia: all stories", "Index page.", server.url("/a/menu")),
        item("gone", "Armenia: archive", "Moved.", server.url("/a/missing")),
        item("plain-elsewhere", PLAIN_TITLE_EN.title, PLAIN_TITLE_EN.teaser, server.url("/a/nowhere")),
    ]
    server.routes["/news.xml"] = Route(rss(items, title="Candidates"))
    plain = item(
        PLAIN_TITLE_EN.key, PLAIN_TITLE_EN.title, PLAIN_TITLE_EN.teaser, server.url("/a/plain-title-en")
    )
    server.routes["/full.xml"] = Route(rss([plain], title="Full text feed"))


@pytest.fixture
def server() -> Iterator[FeedServer]:
    server = FeedServer().start()
    serve_site(server)
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    base = dict(
        home=tmp_path,
        allow_private_networks=True,
        rules_file=ROOT / "config" / "rules.toml",
        per_host_min_gap_seconds=0,  # every page is on one host here
    )
    if request.param == "sqlite":
        yield Settings(**base)  # type: ignore[arg-type]
        db.dispose_engines()
        return
    with postgres_database() as url:
        yield Settings(database_url=url, **base)  # type: ignore[arg-type]


def _ctx(settings: Settings, articles: list[int], alerts: list[int]) -> pipeline.Context:
    db.upgrade(settings)
    return pipeline.Context(
        settings=settings,
        publish_alert=alerts.extend,
        publish_article=articles.extend,
        publish_poll=lambda ids: None,
    )


def _add_feed(settings: Settings, url: str, full_text: bool) -> int:
    with session_scope(settings) as session:
        feed = Feed(config_url=url, url=url, name=url, full_text=full_text)
        session.add(feed)
        session.flush()
        assert feed.id is not None
        return feed.id


def test_full_text_stage(settings: Settings, server: FeedServer) -> None:
    published: list[int] = []
    alerts: list[int] = []
    ctx = _ctx(settings, published, alerts)
    news = _add_feed(settings, server.url("/news.xml"), full_text=False)
    full = _add_feed(settings, server.url("/full.xml"), full_text=True)

    [report_news, report_full] = pipeline.poll_feeds(ctx, [news, full])
    assert (report_news.new, report_news.flagged) == (8, 0)  # nothing matches on title + teaser
    # every item is a candidate except the one with no topic word (its feed is not full_text)
    assert report_news.candidates == 7 and report_full.candidates == 1
    assert len(published) == 8 and not alerts

    reports = {r.url.rsplit("/", 1)[-1]: r for r in pipeline.process_articles(ctx, published)}
    assert {k: r.outcome for k, r in reports.items()} == {
        **{s.key: "ok" for s in (*BODY_ONLY, CANDIDATE_ONLY_EN, PLAIN_TITLE_EN)},
        "json": "failed",
        "menu": "failed",
        "missing": "failed",
    }
    assert (reports["json"].error_class, reports["menu"].error_class) == ("not_html", "empty")
    assert reports["missing"].error_class == "http_4xx"
    assert reports[CANDIDATE_ONLY_EN.key].alert_id is None
    assert len(alerts) == 4  # three body-only stories and the full_text feed's item

    with session_scope(settings) as session:
        for story, topic in [*BODY_ONLY.items(), (PLAIN_TITLE_EN, "armenia_normalization")]:
            url = server.url(f"/a/{story.key}")
            article = session.exec(select(Article).where(Article.url == url)).one()
            assert article.full_text_status == FullTextStatus.OK and article.flagged
            assert article.language == story.lang and article.extracted_at is not None
            assert article.full_text is not None and story.paragraphs[2] in article.full_text
            assert "Putin and Aliyev" not in article.full_text  # the comments stayed out
            [match] = session.exec(select(Match).where(Match.article_id == article.id)).all()
            assert (match.topic, match.stage) == (topic, "full_text")  # only the story's topic
            assert match.snippet.strip("…")[:40] in article.full_text  # the snippet is the body's
            assert match.snippet.strip("…")[:40] not in f"{story.title}\n{story.teaser}"
            alert = session.exec(select(Alert).where(Alert.article_id == article.id)).one()
            assert alert.topics == [topic] and alert.id in alerts
        failed = session.exec(select(Article).where(Article.full_text_status == FullTextStatus.FAILED)).all()
        assert sorted(a.full_text_error or "" for a in failed) == ["empty", "http_4xx", "not_html"]

    # A second delivery of the same message finds nothing pending: no fetch, no second alert.
    hits = sum(server.hits.values())
    assert pipeline.process_articles(ctx, published) == []
    assert sum(server.hits.values()) == hits and len(alerts) == 4
    # Re-polling the feeds stores nothing new and sends nothing to the stage.
    server.routes["/news.xml"] = replace(
        server.routes["/news.xml"], body=server.routes["/news.xml"].body + b" "
    )
    [again, _] = pipeline.poll_feeds(ctx, [news, full])
    assert again.new == 0 and again.candidates == 0 and len(published) == 8


def test_failed_fetches_recorded_together(
    settings: Settings, server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's failed fetches are recorded in one statement per error class, each with its
    class and time; one that another delivery finished while this one fetched stays as that
    delivery left it, and this one reports it skipped."""
    published: list[int] = []
    ctx = _ctx(settings, published, [])
    news = _add_feed(settings, server.url("/news.xml"), full_text=False)
    pipeline.poll_feeds(ctx, [news])
    with session_scope(settings) as session:
        ids = {
            a.url.rsplit("/", 1)[-1]: a.id
            for a in session.exec(select(Article).where(col(Article.id).in_(published))).all()
            if a.url and a.id is not None
        }
    for key in ("json", "menu"):  # two more failed fetches, of another class than the 404
        server.routes[f"/a/{key}"] = Route(b"busy", status=503, content_type="text/plain")
    fetch_all = pipeline.fetch_all

    def fetched_while_another_finished(*args: object, **kwargs: object) -> object:
        results = fetch_all(*args, **kwargs)  # type: ignore[arg-type]
        with session_scope(settings) as session:  # the other delivery records "menu" first
            assert store.fail_full_text(session, {ids["menu"]: "timeout"}, utcnow()) == {ids["menu"]}
        return results

    monkeypatch.setattr(pipeline, "fetch_all", fetched_while_another_finished)
    updates: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("UPDATE ARTICLE"):
            updates.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    before = utcnow()
    try:  # the listener is global: never left behind for the next test
        reports = {
            r.url.rsplit("/", 1)[-1]: r
            for r in pipeline.process_articles(ctx, [ids[k] for k in ("json", "menu", "missing")])
        }
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    # one for the other delivery's "menu", then one a class (http_5xx, http_4xx): not one an article
    assert len(updates) == 3, updates
    assert {k: (r.outcome, r.error_class, r.http_status) for k, r in reports.items()} == {
        "json": ("failed", "http_5xx", 503),
        "menu": ("skipped", "http_5xx", 503),
        "missing": ("failed", "http_4xx", 404),
    }
    with session_scope(settings) as session:
        rows = {
            a.id: a
            for a in session.exec(select(Article).where(col(Article.id).in_(list(ids.values())))).all()
        }
        recorded = {k: (rows[ids[k]].full_text_status, rows[ids[k]].full_text_error) for k in reports}
        # "menu" as the other delivery left it
        assert recorded == {
            "json": ("failed", "http_5xx"),
            "menu": ("failed", "timeout"),
            "missing": ("failed", "http_4xx"),
        }
        for key in ("json", "missing"):
            extracted = rows[ids[key]].extracted_at
            assert extracted is not None and to_utc(extracted) >= before - timedelta(seconds=1)
        # the batch's other candidates were not in this message: untouched
        others = [rows[i] for k, i in ids.items() if k not in ("json", "menu", "missing")]
        assert others and all(a.full_text_status == FullTextStatus.PENDING for a in others)


def test_tick_resends_lost_candidates(settings: Settings, server: FeedServer) -> None:
    published: list[int] = []
    ctx = _ctx(settings, published, [])
    feed = _add_feed(settings, server.url("/news.xml"), full_text=False)
    pipeline.poll_feeds(ctx, [feed])
    lost = list(published)
    published.clear()
    now = utcnow()
    assert pipeline.requeue_full_text(ctx, now) == 0  # not yet: the messages may be on their way
    later = now + timedelta(seconds=settings.article_requeue_seconds + 1)
    assert pipeline.requeue_full_text(ctx, later) == len(lost)
    assert sorted(published) == sorted(lost)
    # A candidate whose runs keep dying (re-sent CRASH_LIMIT times) fails as ``crash``.
    for step in range(2, pipeline.CRASH_LIMIT + 2):
        pipeline.requeue_full_text(
            ctx, later + step * timedelta(seconds=settings.article_requeue_seconds + 1)
        )
    with session_scope(settings) as session:
        rows = session.exec(select(Article).where(col(Article.full_text_status).is_not(None))).all()
        assert {(a.full_text_status, a.full_text_error) for a in rows} == {(FullTextStatus.FAILED, "crash")}


# --- end to end: a real worker consuming the articles queue -------------------------------------


def _jsonl(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_worker_flags_after_extraction(tmp_path: Path, server: FeedServer) -> None:
    """``feedwatch run`` on Redis + PostgreSQL consumes feeds, articles and alerts queues."""
    broker = redis_url(REDIS_DB)
    feeds = tmp_path / "feeds.toml"
    feeds.write_text(
        f'[[feeds]]\nurl = "{server.url("/news.xml")}"\ninterval_minutes = 60\n\n'
        f'[[feeds]]\nurl = "{server.url("/full.xml")}"\ninterval_minutes = 60\nfull_text = true\n',
        encoding="utf-8",
    )
    home = tmp_path / "home"
    alerts_file = home / "alerts.jsonl"
    with postgres_database() as db_url:
        env = service_env(
            home,
            FEEDWATCH_FEEDS_FILE=str(feeds),
            FEEDWATCH_BROKER_URL=broker,
            FEEDWATCH_DATABASE_URL=db_url,
            FEEDWATCH_ALERT_CHANNELS="jsonl",
        )
        engine = create_engine(db_url)

        def statuses() -> list[str | None]:
            try:
                with Session(engine) as session:
                    return list(session.exec(select(Article.full_text_status)).all())
            except Exception:  # the schema may not exist yet
                return [FullTextStatus.PENDING]

        proc = ServiceProcess(feedwatch_cmd("run", "--concurrency", "2"), env, tmp_path / "service.log")
        try:
            wait_for(lambda: len(_jsonl(alerts_file)) >= 4, 90, "four full-text alerts", proc)
            # A candidate that matches nothing after extraction may finish after the last alert:
            # wait for every extraction, not only for the alerts.
            wait_for(lambda: FullTextStatus.PENDING not in statuses(), 60, "every extraction", proc)
        finally:
            proc.stop()
            final = statuses()
            engine.dispose()
    assert "article.extracted" in proc.output()
    lines = _jsonl(alerts_file)
    by_title = {str(a["title"]): a for a in lines}
    assert len(lines) == 4 and len(by_title) == 4
    for story, topic in [*BODY_ONLY.items(), (PLAIN_TITLE_EN, "armenia_normalization")]:
        alert = by_title[story.title]
        assert alert["topics"] == [topic]
        [reason] = alert["reasons"]  # type: ignore[misc]
        assert reason["stage"] == "full_text"
        assert reason["snippet"].strip("…")[:40] in "\n".join(story.paragraphs)
    assert CANDIDATE_ONLY_EN.title not in by_title
    assert final.count(FullTextStatus.PENDING) == 0
