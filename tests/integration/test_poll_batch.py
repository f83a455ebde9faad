"""A poll batch: one transaction for every feed, a per-feed fallback, and only unseen entries
normalized. The real ``pipeline.poll_feeds`` against a local HTTP server on a temp SQLite DB."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy.exc import OperationalError
from sqlmodel import func, select
from support.feeds import add_feeds, item, rss
from support.services import FeedServer, Route
from support.settings import database_settings

from feedwatch import db, parse, pipeline, splice, store
from feedwatch.models import Alert, Article, Feed, Sighting
from feedwatch.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SEED = "Lavrov and Bayramov discussed the peace treaty with Armenia"


def feed_body(prefix: str, seqs: range, match: int | None = None) -> bytes:
    """Items with URL guids: the same item in two feeds is one article."""
    items = []
    for s in seqs:
        url = f"https://example.org/{prefix}/{s}"
        items.append(item(url, SEED if s == match else f"Weather report {prefix} {s}", "Rain and wind.", url))
    return rss(items)


def pipeline_log(monkeypatch: pytest.MonkeyPatch) -> structlog.testing.LogCapture:
    """The pipeline's own logger, capturing. Not ``structlog.testing.capture_logs``: it changes
    the global configuration, which a logger cached by an earlier test (logs.configure caches
    them on first use) no longer reads, so a test passed or failed by the order tests ran in."""
    capture = structlog.testing.LogCapture()
    monkeypatch.setattr(pipeline, "log", structlog.wrap_logger(None, processors=[capture]))
    return capture


def spilled_bodies(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """From now on, for every body a batch fetches: whether it waited in a temporary file."""
    spilled: list[bool] = []
    real = pipeline.fetch_all

    def fetch_spy(*args: Any, **kwargs: Any) -> Any:
        results = real(*args, **kwargs)
        spilled.extend(r.spilled is not None for r in results)
        return results

    monkeypatch.setattr(pipeline, "fetch_all", fetch_spy)
    return spilled


@pytest.fixture(params=["sqlite", "postgresql"])
def ctx(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[pipeline.Context]:
    """On both databases: PostgreSQL stores a batch's articles and sightings through its own
    statements (``store._insert_many``)."""
    with database_settings(request.param, tmp_path) as settings:
        loopback = {"allow_private_networks": True, "per_host_min_gap_seconds": 0.0}
        yield pipeline.Context(settings.model_copy(update=loopback), rng=random.Random(7))


def seen_by_feed(ctx: pipeline.Context) -> Counter[int]:
    """Articles seen per feed: the feed that stored each (``Article.feed_id``) and its sightings."""
    with db.session_scope(ctx.settings) as session:
        owners = session.exec(select(Article.feed_id)).all()
        return Counter(owners) + Counter(session.exec(select(Sighting.feed_id)).all())


def sighting_rows(ctx: pipeline.Context) -> Counter[int]:
    with db.session_scope(ctx.settings) as session:
        return Counter(session.exec(select(Sighting.feed_id)).all())


def count(ctx: pipeline.Context, model: Any) -> int:
    with db.session_scope(ctx.settings) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


def test_batch_stores_every_feed_and_its_alert(ctx: pipeline.Context, server: FeedServer) -> None:
    for name in ("a", "b", "c"):
        server.routes[f"/{name}.xml"] = Route(feed_body(name, range(5), match=3 if name == "b" else None))
    ids = add_feeds(ctx, [server.url(f"/{n}.xml") for n in ("a", "b", "c")])
    reports = pipeline.poll_feeds(ctx, ids)
    assert [(r.outcome, r.entries, r.new) for r in reports] == [("ok", 5, 5)] * 3
    assert [len(r.alert_ids) for r in reports] == [0, 1, 0]
    assert count(ctx, Article) == 15 and count(ctx, Alert) == 1
    # Each article was stored by the feed that showed it: its feed_id says so, no sighting row.
    assert count(ctx, Sighting) == 0 and seen_by_feed(ctx) == dict.fromkeys(ids, 5)


def test_one_feed_failing_in_the_batch_write_costs_only_that_feed(
    ctx: pipeline.Context, server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a", "b", "c"):
        server.routes[f"/{name}.xml"] = Route(feed_body(name, range(4)))
    ids = add_feeds(ctx, [server.url(f"/{n}.xml") for n in ("a", "b", "c")])
    real = pipeline.store_batch

    def store_batch(session: Any, rulebook: Any, feeds: Any, *args: Any, **kwargs: Any) -> None:
        if ids[1] in [f.feed_id for f in feeds]:
            raise RuntimeError("bug in a stage")
        real(session, rulebook, feeds, *args, **kwargs)

    monkeypatch.setattr(pipeline, "store_batch", store_batch)
    reports = pipeline.poll_feeds(ctx, ids)
    assert [r.outcome for r in reports] == ["ok", "error", "ok"]
    assert reports[1].error_class == "internal"
    assert count(ctx, Article) == 8  # the batch was rolled back, then each feed written alone
    with db.session_scope(ctx.settings) as session:
        bad = session.get(Feed, ids[1])
        assert bad is not None and bad.error_class == "internal" and bad.claimed_at is None


def test_only_entries_the_feed_has_not_stored_are_normalized(
    ctx: pipeline.Context, server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.routes["/a.xml"] = Route(feed_body("a", range(10)))
    server.routes["/b.xml"] = Route(feed_body("a", range(10)))  # the same stories in another feed
    (a,) = add_feeds(ctx, [server.url("/a.xml")])
    pipeline.poll_feeds(ctx, [a])
    normalized: list[int] = []
    real = pipeline.draft_feed

    def spy(parsed: Any, **kwargs: Any) -> Any:
        normalized.append(len(parsed.entries))
        return real(parsed, **kwargs)

    monkeypatch.setattr(pipeline, "draft_feed", spy)
    server.routes["/a.xml"] = Route(feed_body("a", range(2, 12)))  # 2 new of 10
    (report,) = pipeline.poll_feeds(ctx, [a])
    assert normalized == [2]
    assert (report.entries, report.new) == (10, 2)
    # Another feed with the same stories (URL guids: one identity everywhere) normalizes them all,
    # stores none again, and records its sightings: "seen" is per feed, not global.
    (b,) = add_feeds(ctx, [server.url("/a.xml"), server.url("/b.xml")])[1:]
    normalized.clear()
    (report,) = pipeline.poll_feeds(ctx, [b])
    assert normalized == [10] and report.new == 0
    with db.session_scope(ctx.settings) as session:
        in_b = session.exec(select(func.count()).select_from(Sighting).where(Sighting.feed_id == b)).one()
        assert in_b == 10


RUSSIAN = "Погода в Москве: дождь и ветер, температура опустится ниже нуля к выходным"
ARMENIAN = "Երևանում սպասվում է անձրև և ուժեղ քամի, ջերմաստիճանը կիջնի մինչև զրո"


def languages_body(prefix: str, titles: list[str]) -> bytes:
    urls = [f"https://example.org/{prefix}/{i}" for i in range(len(titles))]
    return rss([item(u, title, title, u) for u, title in zip(urls, titles, strict=True)])


def stored_languages(ctx: pipeline.Context) -> dict[str, str | None]:
    with db.session_scope(ctx.settings) as session:
        return {str(a.url): a.language for a in session.exec(select(Article)).all()}


def test_a_batchs_languages_are_detected_in_one_call_as_feed_by_feed(
    ctx: pipeline.Context, server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    titles = {
        "en": [SEED, "Weather report: rain and wind over the capital"],
        "ru": [RUSSIAN],
        "hy": [ARMENIAN],
    }
    for name, texts in titles.items():
        server.routes[f"/{name}.xml"] = Route(languages_body(name, texts))
    ids = add_feeds(ctx, [server.url(f"/{n}.xml") for n in titles])
    calls: list[int] = []
    real = pipeline.set_languages

    def spy(drafts: Any) -> None:
        calls.append(len(drafts))
        real(drafts)

    monkeypatch.setattr(pipeline, "set_languages", spy)
    reports = pipeline.poll_feeds(ctx, ids)
    assert [r.outcome for r in reports] == ["ok"] * 3 and calls == [4]
    # What each feed's own normalize_feed would have set, feed by feed.
    expected = {}
    for name in titles:
        url = server.url(f"/{name}.xml")
        parsed = parse.parse_feed(languages_body(name, titles[name]), headers={}, url=url)
        drafts = pipeline.normalize_feed(
            parsed, feed_url=url, configured_language=None, fetched_at=ctx.clock()
        )
        expected.update({str(d.url): d.language for d in drafts})
    assert stored_languages(ctx) == expected
    assert sorted(set(expected.values()), key=str) == ["en", "hy", "ru"]


def test_a_feed_that_breaks_the_batchs_language_detection_fails_alone(
    ctx: pipeline.Context, server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    titles = {"a": [SEED], "b": [RUSSIAN], "c": [ARMENIAN]}
    for name, texts in titles.items():
        server.routes[f"/{name}.xml"] = Route(languages_body(name, texts))
    ids = add_feeds(ctx, [server.url(f"/{n}.xml") for n in titles])
    real = pipeline.set_languages
    calls: list[int] = []

    def breaks_on_russian(drafts: Any) -> None:
        calls.append(len(drafts))
        if any(d.title == RUSSIAN for d, _ in drafts):
            raise ValueError("bug in the model")
        real(drafts)

    monkeypatch.setattr(pipeline, "set_languages", breaks_on_russian)
    capture = pipeline_log(monkeypatch)
    reports = pipeline.poll_feeds(ctx, ids)
    # The batch's call, then one call a feed: only the feed whose text breaks it fails.
    assert calls == [3, 1, 1, 1]
    [failed] = [e for e in capture.entries if e["event"] == "poll.languages_failed"]
    assert failed["feeds"] == 3 and "bug in the model" in failed["error"]
    assert [r.outcome for r in reports] == ["ok", "error", "ok"]
    assert reports[1].error_class == "internal" and "bug in the model" in (reports[1].error or "")
    assert sorted(stored_languages(ctx).values(), key=str) == ["en", "hy"]
    with db.session_scope(ctx.settings) as session:
        broken = session.get(Feed, ids[1])
        assert broken is not None and broken.error_class == "internal" and broken.claimed_at is None


def test_a_deadlocked_batch_is_written_feed_by_feed(
    ctx: pipeline.Context, server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    class Deadlock(Exception):
        sqlstate = pipeline.DEADLOCK

    for name in ("a", "b"):
        server.routes[f"/{name}.xml"] = Route(feed_body(name, range(3)))
    ids = add_feeds(ctx, [server.url("/a.xml"), server.url("/b.xml")])
    real, calls = pipeline._write, []

    def write(ctx_: Any, session: Any, polls: Any, stored: store.StoredKeys) -> None:
        calls.append(([p.report.feed_id for p in polls], len(stored.asked)))
        if len(calls) == 1:  # the batch: PostgreSQL picked this transaction
            raise OperationalError("INSERT …", {}, Deadlock("deadlock detected"))
        real(ctx_, session, polls, stored)

    monkeypatch.setattr(pipeline, "_write", write)
    reports = pipeline.poll_feeds(ctx, ids)
    assert [r.outcome for r in reports] == ["ok", "ok"]
    # The batch with its lookup's 6 keys, then one transaction each, which looks them up again.
    assert calls == [(ids, 6), ([ids[0]], 0), ([ids[1]], 0)]
    assert count(ctx, Article) == 6


def test_the_database_is_asked_only_about_entries_the_feed_row_does_not_list(
    ctx: pipeline.Context, server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Feed.entry_fingerprints`` (feedwatch.known): a poll of a changed feed skips the entries
    its last successful poll stored; only the new ones are asked about, normalized and stored,
    whichever process polls it."""
    server.routes["/a.xml"] = Route(feed_body("a", range(10)))
    (a,) = add_feeds(ctx, [server.url("/a.xml")])
    asked, _ = lookup_spies(monkeypatch)
    pipeline.poll_feeds(ctx, [a])  # first poll: 10 new
    server.routes["/a.xml"] = Route(feed_body("a", range(1, 12)))
    (second,) = pipeline.poll_feeds(ctx, [a])  # 9 listed on the row: asked about the 2 new only
    server.routes["/a.xml"] = Route(feed_body("a", range(2, 13)))
    other = pipeline.Context(ctx.settings, rng=random.Random(8))  # another process
    (third,) = pipeline.poll_feeds(other, [a])
    assert asked == [10, 2, 1]
    assert (second.entries, second.new) == (11, 2) and (third.entries, third.new) == (11, 1)
    assert count(ctx, Article) == 13 and seen_by_feed(ctx) == {a: 13} and count(ctx, Sighting) == 0
    # A failed poll leaves the row's list as it was: the next poll asks again, stores once.
    server.routes["/a.xml"] = Route(b"<html>maintenance</html>")
    (failed,) = pipeline.poll_feeds(ctx, [a])
    assert failed.outcome == "error"
    server.routes["/a.xml"] = Route(feed_body("a", range(3, 14)))
    (again,) = pipeline.poll_feeds(ctx, [a])
    assert (again.entries, again.new) == (11, 1) and asked[-1] == 1 and count(ctx, Article) == 14


def test_a_changed_feed_parses_only_the_items_its_row_does_not_record(
    ctx: pipeline.Context, server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Feed.item_spans`` (feedwatch.splice): the second poll of a changed feed parses its 2 new
    items and keeps the 9 it showed before by their bytes, stores what a whole parse stores, and
    leaves the row a record of all 11; a failed poll leaves the record as it was."""
    server.routes["/a.xml"] = Route(dated_body("a", range(10)))
    (a,) = add_feeds(ctx, [server.url("/a.xml")])
    parsed: list[int] = []
    real = parse._parse_fast

    def spy(*args: Any) -> Any:
        result = real(*args)
        parsed.append(-1 if result is None else len(result.entries))
        return result

    monkeypatch.setattr(parse, "_parse_fast", spy)
    pipeline.poll_feeds(ctx, [a])
    assert parsed == [10] and len(_record(ctx, a).items) == 10
    server.routes["/a.xml"] = Route(dated_body("a", range(1, 12)))
    (second,) = pipeline.poll_feeds(ctx, [a])
    assert parsed == [10, 2]
    assert (second.entries, second.kept, second.new) == (11, 9, 2) and count(ctx, Article) == 12
    assert len(_record(ctx, a).items) == 11
    server.routes["/a.xml"] = Route(b"<html>maintenance</html>")
    (failed,) = pipeline.poll_feeds(ctx, [a])
    assert failed.outcome == "error" and len(_record(ctx, a).items) == 11
    server.routes["/a.xml"] = Route(dated_body("a", range(2, 13)))
    (again,) = pipeline.poll_feeds(ctx, [a])
    assert parsed[-1] == 1 and (again.entries, again.new) == (11, 1) and count(ctx, Article) == 13


def dated_body(prefix: str, seqs: range) -> bytes:
    """``feed_body`` with each item's own date (``support.feeds.item`` dates an item now unless
    told, so its bytes would change with the second)."""
    first = datetime(2026, 11, 30, tzinfo=UTC)
    urls = {s: f"https://example.org/{prefix}/{s}" for s in seqs}
    weather = f"Weather report {prefix}"
    return rss(
        [
            item(urls[s], f"{weather} {s}", "Rain and wind.", urls[s], first + timedelta(minutes=s))
            for s in seqs
        ]
    )


def _record(ctx: pipeline.Context, feed_id: int) -> splice.Record:
    with db.session_scope(ctx.settings) as session:
        feed = session.get(Feed, feed_id)
        assert feed is not None
        record = splice.Record.decode(feed.item_spans)
    assert record is not None
    return record


def test_an_article_stored_by_another_feed_gets_this_feeds_sighting(
    ctx: pipeline.Context, server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two feeds carry the same items (URL guids: one article each). The second feed's poll
    stores no article twice and records its own sightings, also when the articles are stored
    by another transaction between its lookup and its insert (the lookup before normalizing,
    whose ids the write takes, is made to miss: the articles' ``COPY`` then meets them stored
    and they go by ``INSERT … ON CONFLICT``)."""
    server.routes["/a.xml"] = Route(feed_body("same", range(4)))
    server.routes["/b.xml"] = Route(feed_body("same", range(3)))
    server.routes["/c.xml"] = Route(feed_body("same", range(1, 5)))
    a, b, c = add_feeds(ctx, [server.url(f"/{n}.xml") for n in ("a", "b", "c")])
    pipeline.poll_feeds(ctx, [a])
    (second,) = pipeline.poll_feeds(ctx, [b])
    real = store.stored_keys

    def lookup_misses(session: Any, keys: list[str]) -> store.StoredKeys:
        assert len(real(session, keys).ids) == 3  # items 1-3 are stored
        return store.StoredKeys(frozenset(keys), {}, frozenset())

    monkeypatch.setattr(store, "stored_keys", lookup_misses)
    (third,) = pipeline.poll_feeds(ctx, [c])
    assert (second.outcome, second.new, third.outcome, third.new) == ("ok", 0, "ok", 1)
    assert count(ctx, Article) == 5
    assert seen_by_feed(ctx) == {a: 4, b: 3, c: 4}
    # a stored items 0-3 and c item 4: sighting rows for the other feeds' items only
    assert sighting_rows(ctx) == {b: 3, c: 3}


def lookup_spies(monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], list[int]]:
    """From now on, the number of keys of each ``store.stored_keys`` call (the lookup before
    normalizing) and of each ``store.ids_by_key`` call (the write's)."""
    asked: list[int] = []
    looked_up: list[int] = []
    stored_keys, ids_by_key = store.stored_keys, store.ids_by_key

    def stored_spy(session: Any, keys: list[str]) -> store.StoredKeys:
        asked.append(len(keys))
        return stored_keys(session, keys)

    def ids_spy(session: Any, keys: list[str]) -> dict[str, int]:
        looked_up.append(len(keys))
        return ids_by_key(session, keys)

    monkeypatch.setattr(store, "stored_keys", stored_spy)
    monkeypatch.setattr(store, "ids_by_key", ids_spy)
    return asked, looked_up


def test_items_keyed_by_their_title_are_looked_up_by_the_write(
    ctx: pipeline.Context, server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An item with neither guid nor link is keyed by its title and date, which the lookup
    before normalizing does not compute: the write looks those keys up itself, so a poll that
    shows them again stores none twice (the others it takes from that lookup)."""
    date = format_datetime(datetime(2026, 11, 30, 12, tzinfo=UTC))
    untitled = [f"<item><title>Storm {i}</title><pubDate>{date}</pubDate></item>" for i in range(3)]
    urls = [f"https://example.org/s/{s}" for s in range(3)]
    linked = [item(url, f"Story {s}", "Rain.", url) for s, url in enumerate(urls)]
    server.routes["/a.xml"] = Route(rss([*untitled, *linked[:2]]))
    (a,) = add_feeds(ctx, [server.url("/a.xml")])
    asked, looked_up = lookup_spies(monkeypatch)
    (first,) = pipeline.poll_feeds(ctx, [a])
    assert (first.outcome, first.new) == ("ok", 5)
    assert asked == [2] and looked_up == [3, 0]  # the two linked items; the three untitled
    server.routes["/a.xml"] = Route(rss([*untitled, *linked]))  # one more linked item
    asked.clear(), looked_up.clear()
    (second,) = pipeline.poll_feeds(ctx, [a])
    # The two linked items are known by the row's fingerprints: only the new one is asked about.
    assert (second.outcome, second.new) == ("ok", 1)
    assert asked == [1] and looked_up == [3, 0]
    assert count(ctx, Article) == 6


@pytest.mark.parametrize("chunk", [store.INSERT_CHUNK, 2])
def test_feeds_of_one_batch_showing_the_same_new_story_store_it_once(
    ctx: pipeline.Context, server: FeedServer, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """One batch, three feeds, overlapping items, one of them flagged: each article is stored
    once, by the first feed showing it; every other feed showing it gets a sighting; one alert. The whole
    batch's articles take one lookup, before normalizing (``store.stored_keys``), whose answer
    the write takes: none there (and none for a race, as nothing else is storing). The same in
    inserts of 2 rows (``store.INSERT_CHUNK``): chunks change nothing but the peak."""
    monkeypatch.setattr(store, "INSERT_CHUNK", chunk)
    server.routes["/a.xml"] = Route(feed_body("same", range(4), match=2))
    server.routes["/b.xml"] = Route(feed_body("same", range(2, 6), match=2))
    server.routes["/c.xml"] = Route(feed_body("other", range(3)))
    a, b, c = add_feeds(ctx, [server.url(f"/{n}.xml") for n in ("a", "b", "c")])
    asked, lookups = lookup_spies(monkeypatch)
    reports = pipeline.poll_feeds(ctx, [a, b, c])
    assert [(r.outcome, r.entries, r.new) for r in reports] == [("ok", 4, 4), ("ok", 4, 2), ("ok", 3, 3)]
    assert [len(r.alert_ids) for r in reports] == [1, 0, 0]
    assert asked == [9]  # the batch's 9 distinct articles
    assert lookups == [0, 0]  # none left for the write, then the (empty) race lookup
    assert count(ctx, Article) == 9 and count(ctx, Alert) == 1
    with db.session_scope(ctx.settings) as session:
        owners = Counter(session.exec(select(Article.feed_id)).all())
    assert seen_by_feed(ctx) == {a: 4, b: 4, c: 3} and owners == {a: 4, b: 2, c: 3}
    assert sighting_rows(ctx) == {b: 2}  # items 2 and 3, stored by a


def test_a_quiet_poll_is_counted_in_the_batch_line_not_logged_alone(
    ctx: pipeline.Context, server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture = pipeline_log(monkeypatch)
    server.routes["/a.xml"] = Route(feed_body("a", range(3)))
    server.routes["/b.xml"] = Route(feed_body("b", range(3)))
    ids = add_feeds(ctx, [server.url("/a.xml"), server.url("/b.xml")])
    pipeline.poll_feeds(ctx, ids)
    first, capture.entries = capture.entries, []
    server.routes["/b.xml"] = Route(feed_body("b", range(4)))  # a has nothing new: same bytes
    reports = pipeline.poll_feeds(ctx, ids)
    second = capture.entries
    assert [r.outcome for r in reports] == ["unchanged", "ok"]
    assert [e["feed_id"] for e in first if e["event"] == "feed.polled"] == ids
    assert [e["feed_id"] for e in second if e["event"] == "feed.polled"] == [ids[1]]
    [batch] = [e for e in second if e["event"] == "poll.batch"]
    assert (batch["feeds"], batch["unchanged"], batch["ok"]) == (2, 1, 1)


def test_a_tick_spreads_few_due_feeds_over_several_messages(pipeline_settings: Settings) -> None:
    settings = pipeline_settings.model_copy(update={"poll_batch_size": 100, "poll_min_batches": 4})
    published: list[list[int]] = []
    ctx = pipeline.Context(settings, rng=random.Random(7), publish_poll=published.append)
    ids = add_feeds(ctx, [f"http://127.0.0.1:9/feed/{n}.xml" for n in range(110)])
    report = pipeline.tick(ctx)
    assert report.claimed == 110 and report.batches == 4
    assert sorted(len(b) for b in published) == [27, 27, 28, 28]
    assert sorted(i for b in published for i in b) == sorted(ids)


def test_bodies_past_the_byte_budget_are_parsed_and_stored_in_parts(
    ctx: pipeline.Context, server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A part is parsed, normalized and stored before the next part is parsed: a batch of large
    feeds never holds more than one part's entries and drafts, nor more than the bound of
    bodies in memory (the fetch's ``hold_bytes``). Every feed is stored, and the size
    of its body is recorded for the tick (``Feed.body_bytes``); a 304 leaves it as it was."""
    bodies = {name: feed_body(name, range(6), match=2 if name == "c" else None) for name in "abcde"}
    for name, body in bodies.items():
        server.routes[f"/{name}.xml"] = Route(body, etag=f'"{name}"')
    ids = add_feeds(ctx, [server.url(f"/{n}.xml") for n in bodies])
    largest = max(map(len, bodies.values()))
    bound = {"poll_batch_bytes": 2 * largest, "poll_part_bytes": 2 * largest}
    ctx.settings = ctx.settings.model_copy(update=bound)
    steps: list[tuple[str, Any]] = []
    spilled = spilled_bodies(monkeypatch)
    real_parse, real_store = pipeline.parse_feed, pipeline.store_batch

    def parse_spy(body: bytes, **kwargs: Any) -> Any:
        name = kwargs["url"].rsplit("/", 1)[1]
        assert body == bodies[name.removesuffix(".xml")]  # read back whole from its file
        steps.append(("parse", name))
        return real_parse(body, **kwargs)

    def store_spy(session: Any, rulebook: Any, feeds: Any, *args: Any, **kwargs: Any) -> None:
        steps.append(("store", [ids.index(f.feed_id) for f in feeds]))
        real_store(session, rulebook, feeds, *args, **kwargs)

    monkeypatch.setattr(pipeline, "parse_feed", parse_spy)
    monkeypatch.setattr(pipeline, "store_batch", store_spy)
    capture = pipeline_log(monkeypatch)
    reports = pipeline.poll_feeds(ctx, ids)
    # The fetch held two bodies at most (the bound is twice the largest): the rest waited in
    # temporary files until their part was parsed.
    assert len(spilled) == 5 and sum(spilled) >= 3, spilled
    assert steps == [
        ("parse", "a.xml"),
        ("parse", "b.xml"),
        ("store", [0, 1]),
        ("parse", "c.xml"),
        ("parse", "d.xml"),
        ("store", [2, 3]),
        ("parse", "e.xml"),
        ("store", [4]),
    ]
    assert [(r.outcome, r.new) for r in reports] == [("ok", 6)] * 5
    assert [len(r.alert_ids) for r in reports] == [0, 0, 1, 0, 0]
    assert count(ctx, Article) == 30 and count(ctx, Alert) == 1
    [batch] = [e for e in capture.entries if e["event"] == "poll.batch"]
    assert (batch["feeds"], batch["parts"], batch["ok"]) == (5, 3, 5)
    assert batch["spilled"] == sum(spilled)
    expected = {i: len(bodies[n]) for i, n in zip(ids, bodies, strict=True)}
    with db.session_scope(ctx.settings) as session:
        assert {f.id: f.body_bytes for f in session.exec(select(Feed)).all()} == expected
    steps.clear()
    reports = pipeline.poll_feeds(ctx, ids)  # 304s: nothing parsed, one part, sizes kept
    assert [r.outcome for r in reports] == ["not_modified"] * 5 and steps == []
    with db.session_scope(ctx.settings) as session:
        assert {f.id: f.body_bytes for f in session.exec(select(Feed)).all()} == expected


def test_a_part_weighs_only_the_bodies_it_parses(
    ctx: pipeline.Context, server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The part bound (``poll_part_bytes``) counts the changed bodies alone: the same bytes as
    last time and 304s parse nothing, so a batch of them is one part however large, while the
    same batch of changed bodies is cut. The fetch's bound (``poll_batch_bytes``) is apart: under
    it no body waits in a temporary file."""
    bodies = {name: feed_body(name, range(4)) for name in "abcdef"}
    for name, body in bodies.items():
        server.routes[f"/{name}.xml"] = Route(body, etag=f'"{name}"')
    ids = add_feeds(ctx, [server.url(f"/{n}.xml") for n in bodies])
    ctx.settings = ctx.settings.model_copy(update={"poll_part_bytes": 3 * max(map(len, bodies.values()))})
    assert ctx.settings.poll_batch_bytes > sum(map(len, bodies.values()))
    parsed: list[str] = []
    spilled = spilled_bodies(monkeypatch)
    real_parse = pipeline.parse_feed

    def parse_spy(body: bytes, **kwargs: Any) -> Any:
        parsed.append(kwargs["url"].rsplit("/", 1)[1])
        return real_parse(body, **kwargs)

    monkeypatch.setattr(pipeline, "parse_feed", parse_spy)
    capture = pipeline_log(monkeypatch)

    def batch_logged() -> dict[str, Any]:
        [entry] = [e for e in capture.entries if e["event"] == "poll.batch"]
        capture.entries.clear()
        return entry

    assert [r.new for r in pipeline.poll_feeds(ctx, ids)] == [4] * 6
    assert batch_logged()["parts"] == 2 and len(parsed) == 6 and not any(spilled)
    # New validators: the same bytes come back as 200s, every one unchanged, in one part.
    for name, body in bodies.items():
        server.routes[f"/{name}.xml"] = Route(body, etag=f'"{name}-2"')
    parsed.clear()
    assert [r.outcome for r in pipeline.poll_feeds(ctx, ids)] == ["unchanged"] * 6
    entry = batch_logged()
    assert "parts" not in entry and entry["unchanged"] == 6 and parsed == []
    # Two feeds change among them: one part again, and only those two are parsed.
    for name in "be":
        server.routes[f"/{name}.xml"] = Route(feed_body(name, range(5)), etag=f'"{name}-3"')
    reports = pipeline.poll_feeds(ctx, ids)
    assert [r.new for r in reports] == [0, 1, 0, 0, 1, 0]
    assert "parts" not in batch_logged() and parsed == ["b.xml", "e.xml"]


def test_a_part_that_fails_on_the_database_keeps_the_parts_stored_before_it(
    ctx: pipeline.Context, server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database fails during the second part's write: the task fails (its feeds' claims
    expire and they are polled again), and the first part stays stored and reported."""
    bodies = {name: feed_body(name, range(3)) for name in "abc"}
    for name, body in bodies.items():
        server.routes[f"/{name}.xml"] = Route(body)
    ids = add_feeds(ctx, [server.url(f"/{n}.xml") for n in bodies])
    with db.session_scope(ctx.settings) as session:
        store.claim_due_feeds(session, datetime.now(UTC), 10, 300)
    ctx.settings = ctx.settings.model_copy(update={"poll_part_bytes": 2 * max(map(len, bodies.values()))})
    real = pipeline.store_batch

    def store_batch(session: Any, rulebook: Any, feeds: Any, *args: Any, **kwargs: Any) -> None:
        if ids[2] in [f.feed_id for f in feeds]:
            raise OperationalError("INSERT", {}, RuntimeError("server closed the connection"))
        real(session, rulebook, feeds, *args, **kwargs)

    monkeypatch.setattr(pipeline, "store_batch", store_batch)
    with pytest.raises(OperationalError):
        pipeline.poll_feeds(ctx, ids)
    assert count(ctx, Article) == 6
    with db.session_scope(ctx.settings) as session:
        feeds = {f.id: f for f in session.exec(select(Feed)).all()}
    assert [feeds[i].claimed_at is None for i in ids] == [True, True, False]
    assert [feeds[i].last_status for i in ids] == [200, 200, None]


def test_a_tick_cuts_batches_by_the_feeds_last_body_sizes(pipeline_settings: Settings) -> None:
    """Feeds whose last bodies add up to more than ``poll_batch_bytes`` go in separate messages;
    a feed never fetched counts ``UNKNOWN_BODY_BYTES``, so new feeds still go 100 a message."""
    ctx, ids, published = ticking(pipeline_settings, feeds=110, batch_size=100)
    set_body_bytes(
        ctx.settings, {ids[1]: 5 * MIB, ids[2]: 5 * MIB, ids[3]: 9 * MIB, ids[4]: 3 * MIB, ids[5]: 0}
    )
    report = pipeline.tick(ctx)
    assert report.claimed == 110
    # By count first (110 = 55 + 55), then each batch by bytes, in id order (by both bounds at
    # once, 2 + 1 + 1 + 82 + 24, would be as many messages: the near-equal ones stay).
    assert published == [ids[0:2], ids[2:3], ids[3:4], ids[4:55], ids[55:110]]


def test_a_tick_sends_full_messages_where_a_cut_by_count_then_bytes_sends_more(
    pipeline_settings: Settings,
) -> None:
    """Six feeds of 3 MiB, four a message and 8 MiB: by count 3 + 3, each cut by bytes into 2 + 1,
    four messages; the tick cuts by both bounds at once, three messages of two
    (``pipeline.poll_batches``)."""
    ctx, ids, published = ticking(pipeline_settings, feeds=6, batch_size=4)
    set_body_bytes(ctx.settings, dict.fromkeys(ids, 3 * MIB))
    assert pipeline.tick(ctx).batches == 3
    assert published == [ids[0:2], ids[2:4], ids[4:6]]


MIB = 1 << 20


def ticking(
    pipeline_settings: Settings, feeds: int, batch_size: int
) -> tuple[pipeline.Context, list[int], list[list[int]]]:
    """A tick's context over ``feeds`` new feeds, ``batch_size`` a message, 8 MiB of bodies, no
    spread; and the messages it publishes."""
    settings = pipeline_settings.model_copy(
        update={"poll_batch_size": batch_size, "poll_min_batches": 1, "poll_batch_bytes": 8 * MIB}
    )
    published: list[list[int]] = []
    ctx = pipeline.Context(settings, rng=random.Random(7), publish_poll=published.append)
    ids = add_feeds(ctx, [f"http://127.0.0.1:9/feed/{n}.xml" for n in range(feeds)])
    return ctx, ids, published


def set_body_bytes(settings: Settings, sizes: dict[int, int]) -> None:
    """Give feeds the size of a last body, as a poll that brought one records it."""
    with db.session_scope(settings) as session:
        for feed_id, size in sizes.items():
            feed = session.get(Feed, feed_id)
            assert feed is not None
            feed.body_bytes = size
            session.add(feed)


def test_a_tick_of_new_feeds_sends_them_a_full_batch_at_a_time(pipeline_settings: Settings) -> None:
    """Under the default byte bound, feeds never fetched (their size unknown) still go
    ``poll_batch_size`` a message: a first poll keeps its batches (the ingest of new feeds)."""
    settings = pipeline_settings.model_copy(update={"poll_batch_size": 100, "poll_min_batches": 1})
    assert settings.poll_batch_bytes == Settings.model_fields["poll_batch_bytes"].default
    published: list[list[int]] = []
    ctx = pipeline.Context(settings, rng=random.Random(7), publish_poll=published.append)
    ids = add_feeds(ctx, [f"http://127.0.0.1:9/feed/{n}.xml" for n in range(200)])
    pipeline.tick(ctx)
    assert published == [ids[:100], ids[100:]]
