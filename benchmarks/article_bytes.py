"""What an ingested article costs PostgreSQL in bytes, with its teaser stored once or twice.

    .venv/bin/python benchmarks/article_bytes.py [--farm-feeds 26]

A feed entry's teaser (its summary) is most often its only text, and the article's ``text`` is
then the teaser itself. Since round 25 ``Article.summary`` is left empty in that case instead of
holding a second copy (``normalize._draft``). This stores the same drafts both ways, each into
a fresh PostgreSQL database through ``store.insert_articles`` (the worker's insert), and reads:

- ``table_bytes_an_article``: ``pg_total_relation_size('article')`` (heap, TOAST, indexes) after
  the insert, over the articles stored;
- ``wal_bytes_an_article``: the WAL the insert wrote, over the articles stored;
- ``sent_bytes_an_article``: the rows' data the worker sends (the binary ``COPY`` of
  ``store.copy_rows`` since round 38; the JSON parameter before), over the articles stored;
- ``summary_empty``: the share of drafts stored with an empty summary (their teaser is their
  text, or they have none).

Sets: the shared corpus's real feeds (skipped without ``../shared``) and ``--farm-feeds`` of the
benchmark farm's ingest feeds. The figures are bytes, not times: the same on any machine for
the same code and PostgreSQL version. Prints one JSON object; ``*_ratio`` is once ÷ twice.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_ingest import farm_bodies
from run import REAL_FEEDS, Service, postgres_database, server_reading, wal_between


def drafts_of(bodies: Iterable[bytes]) -> list[Any]:
    """The drafts of every body that parses, each feed under its own URL."""
    from feedwatch.normalize import normalize_feed
    from feedwatch.parse import ParseError, parse_feed

    now, drafts = datetime.now(UTC), []
    for i, body in enumerate(bodies):
        url = f"http://127.0.0.1/feed/{i}"
        try:
            parsed = parse_feed(body, headers={}, url=url)
        except ParseError:
            continue
        drafts += normalize_feed(parsed, feed_url=url, configured_language=None, fetched_at=now)
    return drafts


def stored_bytes(drafts: list[Any]) -> dict[str, Any]:
    """Insert ``drafts`` into a fresh database as the worker does; the bytes it took."""
    import psycopg.copy
    from sqlmodel import Session

    from feedwatch import store
    from feedwatch.models import Feed

    sent = [0]
    write = psycopg.copy.LibpqWriter.write

    def counted(self: Any, data: Any) -> None:
        # The article rows go by binary COPY: what the worker encodes and PostgreSQL parses.
        sent[0] += len(data)
        write(self, data)

    with tempfile.TemporaryDirectory(prefix="fw-bytes-") as home, postgres_database() as url:
        service = Service(Path(home), url, "memory://", 1)
        with Session(service.engine) as session:
            feed = Feed(config_url="http://127.0.0.1/", url="http://127.0.0.1/")
            session.add(feed)
            session.commit()
            assert feed.id is not None
            rows = [(feed.id, d) for d in drafts]
            before = server_reading(service)
            psycopg.copy.LibpqWriter.write = counted  # type: ignore[method-assign]
            try:
                stored = len(store.insert_articles(session, rows, datetime.now(UTC), set()))
            finally:
                psycopg.copy.LibpqWriter.write = write  # type: ignore[method-assign]
            session.commit()
        if not sent[0]:  # the INSERT fallback ran, or the COPY went another way: no figure
            raise RuntimeError("article_bytes: the articles were not sent by COPY")
        wal = wal_between(before, server_reading(service), stored)
        assert wal is not None  # PostgreSQL
        ((size,),) = service.execute("SELECT pg_total_relation_size('article')")
        service.engine.dispose()
    return {
        "articles": stored,
        "table_bytes_an_article": round(size / stored),
        "wal_bytes_an_article": wal["bytes_each"],
        "sent_bytes_an_article": round(sent[0] / stored),
    }


def compare(drafts: list[Any]) -> dict[str, Any]:
    """The drafts as normalized (the teaser once) and with the teaser copied back (twice)."""
    twice = [d if d.summary else dataclasses.replace(d, summary=d.text) for d in drafts]
    out: dict[str, Any] = {
        "drafts": len(drafts),
        "summary_empty": round(sum(not d.summary for d in drafts) / len(drafts), 3),
        "twice": stored_bytes(twice),
        "once": stored_bytes(drafts),
    }
    for key in ("table_bytes_an_article", "wal_bytes_an_article", "sent_bytes_an_article"):
        out[key.replace("_an_article", "_ratio")] = round(out["once"][key] / out["twice"][key], 3)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--farm-feeds", type=int, default=26)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"farm": compare(drafts_of(farm_bodies(args.farm_feeds).values()))}
    files = sorted(REAL_FEEDS.glob("*.xml")) if REAL_FEEDS.is_dir() else []
    if files:
        result["real"] = compare(drafts_of(p.read_bytes() for p in files))
    else:
        result["real"] = {"skipped": f"{REAL_FEEDS} not found"}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
