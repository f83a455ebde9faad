"""JSON columns go through orjson (feedwatch.db.json_bytes on PostgreSQL, json_dumps on SQLite,
orjson.loads) on both databases: what a feed row's history and a match's explanation hold comes
back as it was written."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from sqlmodel import Session, select
from support.settings import database_settings

from feedwatch import db
from feedwatch.models import Feed


def test_json_dumps_matches_the_standard_library_after_a_round_trip() -> None:
    value = {"at": "2026-11-30T11:00:00+00:00", "rate": 12.5, "ttl": None, "тема": ["Баку", "Ереван"], 3: [1]}
    assert json.loads(db.json_dumps(value)) == json.loads(json.dumps(value))


def test_json_dumps_falls_back_for_what_orjson_refuses() -> None:
    # A lone surrogate is not UTF-8: orjson refuses it, the standard library escapes it.
    assert db.json_dumps({"t": "\ud800"}) == json.dumps({"t": "\ud800"})
    assert db.json_bytes({"t": "\ud800"}) == json.dumps({"t": "\ud800"}).encode()


def test_json_bytes_is_utf8_and_writes_keys_that_are_not_strings_as_the_standard_library() -> None:
    value = {"reason": "rate → 0.18 min; ±10% jitter", 3: [1], "nested": {2.5: "x", None: True}}
    written = db.json_bytes(value)
    assert isinstance(written, bytes)
    assert json.loads(written.decode("utf-8")) == json.loads(json.dumps(value))


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_feed_history_round_trips(kind: str, tmp_path: Path) -> None:
    history = [
        {
            "at": "2026-11-30T11:00:00+00:00",
            "outcome": "ok",
            "status": 200,
            "rate": 0.1 + 0.2,
            "title": "Азәрбајҹан",
        },
        {"at": "2026-11-30T11:10:00+00:00", "outcome": "not_modified", "status": 304, "newest": None},
    ]
    with database_settings(kind, tmp_path) as settings:
        dialect = db.get_engine(settings).dialect
        # The round trip below would pass through the standard library too: check the route.
        # PostgreSQL's psycopg takes the bytes as they are; SQLite's driver would store a BLOB.
        serializer = db.json_bytes if kind == "postgresql" else db.json_dumps
        assert dialect._json_serializer is serializer  # type: ignore[attr-defined]
        assert dialect._json_deserializer is orjson.loads  # type: ignore[attr-defined]
        with Session(db.get_engine(settings)) as session:
            session.add(
                Feed(
                    config_url="http://127.0.0.1/f", url="http://127.0.0.1/f", name="f", poll_history=history
                )
            )
            session.commit()
        with Session(db.get_engine(settings)) as session:
            feed = session.exec(select(Feed)).one()
            assert feed.poll_history == history
