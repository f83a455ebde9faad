"""JSON Feed 1.0/1.1 (https://jsonfeed.org/version/1.1) → :class:`feedwatch.parse.ParsedFeed`.

feedparser does not read JSON Feed, so this maps it onto the same entry form by hand. Every
field is optional in practice: producers send numbers as ids, strings as authors, and so on.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from dateutil import parser as dateparser

from feedwatch.known import fingerprint
from feedwatch.parse import (
    MAX_AUTHOR,
    MAX_ENTRIES,
    MAX_RAW_FIELD,
    MAX_RAW_TITLE,
    NOT_A_FEED,
    PARSE_ERROR,
    ParsedEntry,
    ParsedFeed,
    ParseError,
)


def parse_json_feed(body: bytes, *, url: str) -> ParsedFeed:
    """Parse a JSON Feed document; raises :class:`ParseError`."""
    try:
        doc = json.loads(body.decode("utf-8-sig", errors="replace"))
    # RecursionError: deeply nested arrays; ValueError: bad JSON or an oversized integer.
    except (ValueError, RecursionError) as exc:
        raise ParseError(PARSE_ERROR, f"invalid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not (
        "jsonfeed.org/version" in str(doc.get("version", "")) or isinstance(doc.get("items"), list)
    ):
        raise ParseError(NOT_A_FEED, "JSON document is not a JSON Feed")
    items = doc.get("items")
    items = items if isinstance(items, list) else []
    language = _str(doc.get("language"))
    entries = tuple(_entry(item, url, language) for item in items[:MAX_ENTRIES] if isinstance(item, dict))
    return ParsedFeed(
        title=_str(doc.get("title"), MAX_RAW_TITLE) or "",
        link=_str(doc.get("home_page_url")),
        language=language,
        entries=entries,
        bozo=False,
        bozo_message=None,
        ttl_minutes=None,
        update_period=None,
        update_frequency=None,
        hub_url=_hub(doc.get("hubs")),
        self_url=_str(doc.get("feed_url")),
        format="json",
    )


def _entry(item: dict[str, Any], url: str, feed_language: str | None) -> ParsedEntry:
    content = _str(item.get("content_html"), MAX_RAW_FIELD)
    if content is None:
        # content_text is plain text: escape it so the HTML-to-text step leaves it as it is.
        text = _str(item.get("content_text"), MAX_RAW_FIELD)
        content = _escape(text) if text else ""
    summary = _str(item.get("summary"), MAX_RAW_FIELD)
    guid = item.get("id")
    if isinstance(guid, bool) or not isinstance(guid, str | int):
        guid = None  # ids must be strings; producers send numbers, anything else is no id
    guid = _str(str(guid)) if guid is not None else None
    link = _str(item.get("url")) or _str(item.get("external_url"))
    return ParsedEntry(
        guid=guid,
        link=link,
        title=_str(item.get("title"), MAX_RAW_TITLE) or "",
        summary_html=_escape(summary) if summary else "",
        content_html=content,
        author=_author(item),
        published=_date(item.get("date_published")),
        updated=_date(item.get("date_modified")),
        language=_str(item.get("language")) or feed_language,
        base=url,
        fingerprint=fingerprint(guid, link, url, url) if guid or link else None,
    )


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _str(value: object, limit: int = MAX_RAW_TITLE) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()[:limit]
    return value or None


def _author(item: dict[str, Any]) -> str | None:
    authors = item.get("authors")
    candidates = authors if isinstance(authors, list) else [item.get("author")]
    for author in candidates:
        name = _str(author.get("name") if isinstance(author, dict) else author, MAX_AUTHOR)
        if name:
            return name
    return None


def _hub(hubs: object) -> str | None:
    if isinstance(hubs, list):
        for hub in hubs:
            if isinstance(hub, dict) and (hub_url := _str(hub.get("url"))):
                return hub_url
    return None


def _date(value: object) -> datetime | None:
    """RFC 3339 per the spec; anything dateutil reads is accepted, naive taken as UTC."""
    if not isinstance(value, str) or not value.strip() or len(value) > 100:
        return None
    try:
        parsed = dateparser.isoparse(value.strip())
    except (ValueError, OverflowError):
        try:
            parsed = dateparser.parse(value.strip())
        except (ValueError, OverflowError):
            return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
