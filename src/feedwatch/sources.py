"""Sources: the list of feeds to poll, read from the file ``FEEDWATCH_FEEDS_FILE`` names.

Two formats are accepted, told apart by the file's extension (``.opml``/``.xml``) or, failing
that, by its first non-blank byte (``<`` means OPML):

* TOML (``config/feeds.toml``): ``[[feeds]]`` tables, each with a required ``url`` and the
  optional keys of :class:`FeedSpec`; a top-level ``[defaults]`` table supplies any of those keys
  except ``url`` and ``name`` to every feed that does not set it.
* OPML, as exported by feed readers: every ``<outline xmlUrl=...>`` is a feed; the ``text`` or
  ``title`` of the outlines around it become its tags. OPML comes from users, so it is parsed
  with ``defusedxml`` and any DTD or entity declaration is refused outright.

Interval precedence: the feed's own value, then ``[defaults]``, then the caller's
``default_interval_minutes`` (``FEEDWATCH_DEFAULT_INTERVAL_MINUTES``).

Every problem is a :class:`FeedsConfigError` naming the file, the feed (1-based position and
url) and the reason, because an operator fixes the file by reading that one line.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

PRIORITY_TAG = "priority"

FEED_KEYS = (
    "url",
    "name",
    "language",
    "interval_minutes",
    "min_interval_minutes",
    "max_interval_minutes",
    "tags",
    "full_text",
    "enabled",
)
DEFAULT_KEYS = tuple(k for k in FEED_KEYS if k not in ("url", "name"))
TOP_LEVEL_KEYS = ("defaults", "feeds")

_Fail = Callable[[str], "FeedsConfigError"]

_LANGUAGE = re.compile(r"^([a-z]{2})(?:[-_][a-z0-9]{1,8})*$")


@dataclass(frozen=True)
class FeedSpec:
    """One feed as configured; the database's Feed row is created from it."""

    url: str
    name: str = ""
    language: str | None = None
    interval_minutes: float = 10.0
    min_interval_minutes: float | None = None
    max_interval_minutes: float | None = None
    tags: tuple[str, ...] = ()
    full_text: bool = False
    enabled: bool = True

    @property
    def is_priority(self) -> bool:
        """Tagged ``priority``: polled at its minimum interval while it is active."""
        return PRIORITY_TAG in self.tags


class FeedsConfigError(ValueError):
    """The feeds file cannot be used; the message says where and why."""

    def __init__(self, path: Path, reason: str, *, index: int | None = None, url: str | None = None) -> None:
        self.path = path
        self.reason = reason
        self.index = index
        self.url = url
        where = str(path)
        if index is not None:
            where += f": feed #{index}"
            if url:
                where += f" ({url})"
        super().__init__(f"{where}: {reason}")


def load_feeds(path: Path, default_interval_minutes: float = 10.0) -> list[FeedSpec]:
    """Read and validate the feeds file; disabled feeds are returned too (``enabled=False``)."""
    path = Path(path)
    if not _positive_number(default_interval_minutes):
        raise FeedsConfigError(path, "default_interval_minutes must be a number > 0")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FeedsConfigError(path, f"cannot read the feeds file: {exc.strerror or exc}") from exc
    if _is_opml(path, data):
        raw = list(_opml_entries(path, data))
        defaults: Mapping[str, Any] = {}
    else:
        raw, defaults = _toml_entries(path, data)
    specs: list[FeedSpec] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(raw, start=1):
        spec = _build(path, index, entry, defaults, float(default_interval_minutes))
        key = _url_key(spec.url)
        if key in seen:
            raise FeedsConfigError(
                path, f"duplicate url (same as feed #{seen[key]})", index=index, url=spec.url
            )
        seen[key] = index
        specs.append(spec)
    return specs


def _is_opml(path: Path, data: bytes) -> bool:
    if path.suffix.lower() in (".opml", ".xml"):
        return True
    return data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")


def _toml_entries(path: Path, data: bytes) -> tuple[list[Any], Mapping[str, Any]]:
    try:
        doc = tomllib.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise FeedsConfigError(path, f"not UTF-8 text: {exc.reason}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise FeedsConfigError(path, f"invalid TOML: {exc}") from exc
    unknown = sorted(set(doc) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise FeedsConfigError(path, f"unknown top-level key(s) {unknown}; allowed: {list(TOP_LEVEL_KEYS)}")
    defaults = doc.get("defaults", {})
    if not isinstance(defaults, dict):
        raise FeedsConfigError(path, "[defaults] must be a table")
    bad = sorted(set(defaults) - set(DEFAULT_KEYS))
    if bad:
        raise FeedsConfigError(path, f"unknown key(s) {bad} in [defaults]; allowed: {list(DEFAULT_KEYS)}")
    feeds = doc.get("feeds", [])
    if not isinstance(feeds, list):
        raise FeedsConfigError(path, "feeds must be an array of tables: [[feeds]]")
    return feeds, defaults


def _opml_entries(path: Path, data: bytes) -> Iterator[dict[str, Any]]:
    try:
        root = SafeET.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise FeedsConfigError(
            path, f"refused: OPML must not contain a DTD or entity declarations ({exc!r})"
        ) from exc
    except ParseError as exc:
        raise FeedsConfigError(path, f"invalid XML: {exc}") from exc
    if root.tag != "opml":
        raise FeedsConfigError(path, f"not an OPML document (root element <{root.tag}>)")
    body = root.find("body")
    if body is None:
        raise FeedsConfigError(path, "OPML document has no <body>")
    yield from _walk_outlines(body, ())


def _walk_outlines(parent: Element, tags: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    for outline in parent.findall("outline"):
        attrs = {k.lower(): v.strip() for k, v in outline.attrib.items()}
        label = attrs.get("title") or attrs.get("text") or ""
        if "xmlurl" in attrs:
            entry: dict[str, Any] = {"url": attrs["xmlurl"], "name": label, "tags": list(tags)}
            if attrs.get("language"):
                entry["language"] = attrs["language"]
            yield entry
        # A category outline's label tags every feed below it; a feed outline may nest too.
        is_category = bool(label) and "xmlurl" not in attrs
        yield from _walk_outlines(outline, (*tags, label) if is_category else tags)


def _build(
    path: Path, index: int, entry: Any, defaults: Mapping[str, Any], default_interval: float
) -> FeedSpec:
    if not isinstance(entry, dict):
        raise FeedsConfigError(path, "each [[feeds]] entry must be a table", index=index)
    raw_url = entry.get("url")
    url_text = raw_url.strip() if isinstance(raw_url, str) else None

    def fail(reason: str) -> FeedsConfigError:
        return FeedsConfigError(path, reason, index=index, url=url_text)

    unknown = sorted(set(entry) - set(FEED_KEYS))
    if unknown:
        raise fail(f"unknown key(s) {unknown}; allowed: {list(FEED_KEYS)}")
    if raw_url is None:
        raise fail("missing url")
    if not url_text:
        raise fail("url must be a non-empty string")
    parts = urlsplit(url_text)
    if parts.scheme.lower() not in ("http", "https"):
        raise fail(f"url scheme must be http or https, not {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise fail("url has no host")

    merged = {**defaults, **entry}
    name = merged.get("name", "")
    if not isinstance(name, str):
        raise fail("name must be a string")
    interval = _interval(merged, "interval_minutes", fail)
    low = _interval(merged, "min_interval_minutes", fail)
    high = _interval(merged, "max_interval_minutes", fail)
    if interval is None:
        interval = default_interval
    if low is not None and high is not None and low > high:
        raise fail(f"bad interval: min_interval_minutes {low:g} > max_interval_minutes {high:g}")
    if low is not None and interval < low:
        raise fail(f"bad interval: interval_minutes {interval:g} < min_interval_minutes {low:g}")
    if high is not None and interval > high:
        raise fail(f"bad interval: interval_minutes {interval:g} > max_interval_minutes {high:g}")
    return FeedSpec(
        url=url_text,
        name=name.strip(),
        language=_language(merged.get("language"), fail),
        interval_minutes=interval,
        min_interval_minutes=low,
        max_interval_minutes=high,
        tags=_tags(merged.get("tags", ()), fail),
        full_text=_flag(merged, "full_text", False, fail),
        enabled=_flag(merged, "enabled", True, fail),
    )


def _positive_number(value: object) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


def _interval(merged: Mapping[str, Any], key: str, fail: _Fail) -> float | None:
    value = merged.get(key)
    if value is None:
        return None
    if not _positive_number(value):
        raise fail(f"bad interval: {key} must be a number > 0, got {value!r}")
    return float(value)


def _language(value: object, fail: _Fail) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not (m := _LANGUAGE.match(value.strip().lower())):
        raise fail(f"language must be an ISO 639-1 code such as 'en' or 'ru', got {value!r}")
    return m.group(1)


def _tags(value: object, fail: _Fail) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(t, str) for t in value):
        raise fail("tags must be a list of strings")
    return tuple(dict.fromkeys(t.strip() for t in value if t.strip()))


def _flag(merged: Mapping[str, Any], key: str, default: bool, fail: _Fail) -> bool:
    value = merged.get(key, default)
    if not isinstance(value, bool):
        raise fail(f"{key} must be true or false, got {value!r}")
    return value


def _url_key(url: str) -> str:
    """Scheme and host are case-insensitive; the rest of a URL is not."""
    parts = urlsplit(url)
    return parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower()).geturl()
