"""``benchmarks/farm.py``'s ``renew``: the ``real`` kind serves a real feed with every item made
new on every hit, nothing else changed. ``run.py``'s ``ingest_real`` figure counts on it."""

from __future__ import annotations

import feedparser
import pytest
from support.bench import bench_module
from support.services import SHARED

from feedwatch.normalize import entry_identity_key
from feedwatch.parse import parse_feed

farm = bench_module("farm")
real_bodies, renew = farm.real_bodies, farm.renew

FEEDS = SHARED / "corpus" / "feeds"
URL = "http://127.0.0.1:8080/real/3.xml"
pytestmark = pytest.mark.corpus


def _keys(body: bytes) -> list[str | None]:
    return [entry_identity_key(e, feed_url=URL) for e in parse_feed(body, headers={}, url=URL).entries]


def test_every_identity_is_new_on_every_hit_and_the_rest_is_the_same() -> None:
    bodies = real_bodies(str(FEEDS))
    if not bodies:
        pytest.skip("no ../shared corpus (a fresh clone without it)")
    with_identity = 0
    for body in bodies:
        hits = [renew(body, f"real3h{hit}", 8080) for hit in range(2)]
        keys = [_keys(b) for b in (body, *hits)]
        assert len(keys[0]) == len(keys[1]) == len(keys[2])
        for original, first, second in zip(*keys, strict=True):
            if original is None:  # neither guid nor link: keyed by title and date, left alone
                assert first is None and second is None
                continue
            with_identity += 1
            assert len({original, first, second}) == 3
        # Only identities moved: titles and texts as they were.
        before, after = feedparser.parse(body), feedparser.parse(hits[0])
        assert [(e.get("title"), e.get("summary")) for e in before.entries] == [
            (e.get("title"), e.get("summary")) for e in after.entries
        ]
    assert with_identity >= 1_300  # of the corpus's 1,413 entries


def test_absolute_urls_move_onto_the_farm() -> None:
    body = (
        b"<rss version='2.0'><channel><link>https://site.example/</link><item><guid>https://site.example/a</guid>"
        b"<link>https://site.example/a?x=1</link></item><item><guid isPermaLink='false'>42</guid></item>"
        b"</channel></rss>"
    )
    renewed = renew(body, "real1h5", 8080)
    assert b"<guid>http://127.0.0.1:8080/real1h5/site.example/a</guid>" in renewed
    assert b"<link>http://127.0.0.1:8080/real1h5/site.example/a?x=1</link>" in renewed
    assert b"<guid isPermaLink='false'>real1h5-42</guid>" in renewed
    assert b"https://" not in renewed
