"""Property: whatever the bytes, parse_feed (and normalize after it) raises nothing but ParseError."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedwatch.normalize import normalize_feed
from feedwatch.parse import ParseError, parse_feed

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "feeds"
SEEDS = [p.read_bytes() for p in sorted(FIXTURES.iterdir()) if p.stat().st_size < 20_000]
URL = "https://fuzz.example/feed"
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


def _parse_and_normalize(body: bytes, content_type: str = "") -> None:
    try:
        feed = parse_feed(body, headers={"Content-Type": content_type}, url=URL)
    except ParseError as exc:
        assert exc.error_class in {"not_a_feed", "parse_error"}
        return
    normalize_feed(feed, feed_url=URL, configured_language=None, fetched_at=datetime(2025, 1, 1))


@st.composite
def mutated_fixture(draw: st.DrawFn) -> bytes:
    """A fixture feed with a few byte ranges deleted, replaced or duplicated."""
    body = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        if not body:
            break
        start = draw(st.integers(0, len(body) - 1))
        end = draw(st.integers(start, min(len(body), start + 64)))
        action = draw(st.sampled_from(["delete", "replace", "duplicate"]))
        if action == "delete":
            del body[start:end]
        elif action == "replace":
            body[start:end] = draw(st.binary(max_size=32))
        else:
            body[start:start] = body[start:end]
    return bytes(body)


@pytest.mark.timeout(60)
@FUZZ
@given(body=st.binary(max_size=2_000))
def test_random_bytes_raise_only_parse_error(body: bytes) -> None:
    _parse_and_normalize(body)


@pytest.mark.timeout(60)
@FUZZ
@given(
    body=mutated_fixture(),
    content_type=st.sampled_from(["", "application/rss+xml", "application/feed+json", "text/html"]),
)
def test_mutated_fixtures_raise_only_parse_error(body: bytes, content_type: str) -> None:
    _parse_and_normalize(body, content_type)


@pytest.mark.timeout(60)
@FUZZ
@given(
    doc=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "version",
                        "items",
                        "id",
                        "url",
                        "title",
                        "content_html",
                        "date_published",
                        "authors",
                        "hubs",
                        "language",
                        "summary",
                    ]
                ),
                children,
                max_size=6,
            )
        ),
        max_leaves=20,
    )
)
def test_json_shapes_raise_only_parse_error(doc: object) -> None:
    body = json.dumps({"version": "https://jsonfeed.org/version/1.1", "items": [doc]})
    _parse_and_normalize(body.encode())
