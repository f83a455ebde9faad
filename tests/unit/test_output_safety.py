"""Outputs are data: one hostile alert through every channel's real output, one invariant set.

tests/unit/test_channels.py checks the escaping rules of ``render`` one format at a time; this
file holds the invariants across what each channel actually emits (console line, JSONL line,
webhook body and headers, Redis Stream fields, Apprise title and body in text/markdown/html,
Slack mrkdwn, digests) for an alert whose every feed-supplied field is hostile:

* HTML is what nh3 (ammonia) would leave as it is: no ``<script``, no ``onerror=``
* no ``javascript:`` link anywhere (rendered formats drop non-http(s) links; the JSON outputs
  carry ``Article.url``, which normalize only sets for http(s): checked from a real feed item)
* Slack mentions (``@channel``, ``<!here>``, ``<@U123>``) cannot ping, in every format
* no CR/LF in a title (e-mail subject) or a header; titles cut at ``render.TITLE_CHARS``
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import nh3
import pytest
import structlog
from structlog.testing import capture_logs

from feedwatch.channels import AlertPayload, Copy, DigestPayload, TopicReason, render
from feedwatch.channels.apprise_channel import AppriseChannel
from feedwatch.channels.console import ConsoleChannel
from feedwatch.channels.jsonl import JsonlChannel
from feedwatch.channels.redis_stream import RedisStreamChannel
from feedwatch.channels.webhook import WebhookChannel
from feedwatch.fetch import AddressPolicy
from feedwatch.normalize import normalize_feed
from feedwatch.parse import parse_feed

EVIL = (
    "<script>alert(1)</script> <img src=x onerror=alert(1)> @channel <!here> <@U123> "
    "*bold* _it_ [x](http://evil)"
)
TITLE = EVIL + "\r\nBcc: x@y\r\n" + "long " * 100
JS_URL = "javascript:alert(1)"
TOPICS = ["russia_azerbaijan", "armenia_normalization"]


def hostile(url: str | None = JS_URL) -> AlertPayload:
    snippet = f"Lavrov said {EVIL}"
    reason = TopicReason(TOPICS[0], 3.0, ["Lavrov"], snippet, highlights=[(0, 6)])
    copy = Copy(outlet=EVIL + "\r\nBcc: x@y", title=TITLE, url=JS_URL, published_at=None)
    return AlertPayload(
        alert_id=1,
        idempotency_key="feedwatch-alert-1",
        topics=TOPICS,
        title=TITLE,
        url=url,
        feed=EVIL,
        feed_url="https://example.org/feed",
        published_at="2025-05-01T12:00:00Z",
        language="en",
        reasons=[reason],
        also_reported=[copy],
    )


def digest(payload: AlertPayload) -> DigestPayload:
    return DigestPayload("feedwatch-digest-1", "chat", "digest", "2025-05-01T12:00:00Z", [payload] * 3)


def url_from_feed() -> str | None:
    """What a real feed item linking to ``javascript:`` becomes: normalize keeps no such URL."""
    body = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><link>https://e.org/</link>'
        f"<item><title>x</title><link>{JS_URL}</link><guid>{JS_URL}</guid></item></channel></rss>"
    ).encode()
    feed = parse_feed(body, headers={}, url="https://e.org/feed")
    [draft] = normalize_feed(feed, feed_url="https://e.org/feed", configured_language=None,
                             fetched_at=datetime(2025, 5, 1))  # fmt: skip
    return draft.url


# --- what each channel emits -------------------------------------------------------------------


def rendered(fmt: render.Format) -> list[str]:
    p = hostile()
    return [render.alert_body(p, fmt), render.digest_body(digest(p), fmt)]


def apprise_out(fmt: render.Format) -> list[tuple[str, str]]:
    """(title, body) pairs the Apprise channel hands to Apprise for an alert and a digest."""
    channel = AppriseChannel("chat", "json://127.0.0.1:9/", fmt)
    sent: list[tuple[str, str]] = []

    def notify(body: str, title: str, body_format: Any) -> bool:
        sent.append((title, body))
        return True

    channel._apprise.notify = notify  # type: ignore[method-assign]
    channel.send(hostile())
    channel.send_digest(digest(hostile()))
    return sent


def webhook_out(payload: AlertPayload) -> tuple[bytes, dict[str, str]]:
    channel = WebhookChannel("hook", "https://hooks.example.org/x", b"s", AddressPolicy())
    captured: dict[str, Any] = {}

    async def request(body: bytes, headers: dict[str, str]) -> int:
        captured.update(body=body, headers=headers)
        return 204

    channel._request = request  # type: ignore[method-assign]
    channel.send(payload)
    return captured["body"], captured["headers"]


class StreamRecorder:
    def __init__(self) -> None:
        self.entries: list[dict[str, str]] = []

    def xadd(self, stream: str, fields: dict[str, str], **_: Any) -> None:
        self.entries.append(fields)


def stream_out(payload: AlertPayload) -> dict[str, str]:
    channel = RedisStreamChannel("stream", "redis://127.0.0.1:9/0", "s", 100)
    recorder = StreamRecorder()
    channel._client = recorder  # type: ignore[assignment]
    channel.send(payload)
    return recorder.entries[0]


def console_lines() -> tuple[dict[str, Any], list[str]]:
    with capture_logs() as logs:
        ConsoleChannel().send(hostile())
    [event] = logs
    renderers = [structlog.processors.JSONRenderer(), structlog.dev.ConsoleRenderer(colors=False)]
    return event, [str(r(None, "warning", dict(event))) for r in renderers]


# --- the invariants ----------------------------------------------------------------------------


def assert_no_ping(text: str) -> None:
    assert "@channel" not in text and "@here" not in text, text
    assert "<!here>" not in text and "<@U123>" not in text, text


@pytest.mark.parametrize("fmt", render.FORMATS)
def test_rendered_formats_hold_every_invariant(fmt: render.Format) -> None:
    for out in rendered(fmt):
        assert "javascript:" not in out
        assert_no_ping(out)
        if fmt != "text":  # markup formats: feed text can open no tag and forge no link
            assert "<script" not in out and "<img" not in out
            assert 'href="http://evil"' not in out and "<http://evil" not in out
            assert "<!" not in out and "<@" not in out
        if fmt == "markdown":
            assert "](http://evil)" not in out


def test_html_passes_nh3_unchanged() -> None:
    # nh3 removes every tag and attribute outside its allow-list: an unchanged body has no script,
    # no event handler and no foreign link, whatever the feed said.
    for body in rendered("html"):
        cleaned = nh3.clean(body, link_rel=None)
        assert cleaned == body, (cleaned, body)


@pytest.mark.parametrize("fmt", render.FORMATS)
def test_apprise_title_is_one_short_line_and_body_is_escaped(fmt: render.Format) -> None:
    for title, body in apprise_out(fmt):
        assert "\r" not in title and "\n" not in title  # the e-mail subject
        assert len(title) <= render.TITLE_CHARS
        assert "Bcc: x@y" not in title.split("]", 1)[0]
        assert "javascript:" not in body + title
        assert_no_ping(body + title)


def test_titles_are_cut_everywhere_they_are_shown() -> None:
    p = hostile()
    assert len(render.title(p)) <= render.TITLE_CHARS
    assert len(render.digest_title(digest(p))) <= render.TITLE_CHARS
    headline = render.alert_body(p, "text").split("\n", 1)[0]
    assert len(headline.replace(render.ZWSP, "")) <= render.TITLE_CHARS  # cut, then escaped


def test_console_line_is_one_line_with_a_cut_title() -> None:
    event, lines = console_lines()
    assert len(event["title"]) <= render.TITLE_CHARS
    for line in lines:
        assert "\r" not in line and "\n" not in line, line


def test_feed_links_other_than_http_never_reach_an_article() -> None:
    assert url_from_feed() is None


def test_json_outputs_keep_text_as_data() -> None:
    """JSONL, webhook and stream carry the text exactly (data), one line, valid JSON, no JS link."""
    payload = hostile(url=url_from_feed())
    payload = AlertPayload(**{**payload.__dict__, "also_reported": []})  # copies are articles too
    body, headers = webhook_out(payload)
    entry = stream_out(payload)
    for raw in (body.decode(), entry["data"]):
        data = json.loads(raw)
        assert data["title"] == TITLE and "javascript:" not in raw
    for name, value in headers.items():
        assert "\r" not in value and "\n" not in value, name
    assert entry["idempotency_key"] == "feedwatch-alert-1"


def test_jsonl_line_is_one_json_object(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    JsonlChannel(path).send(hostile(url=url_from_feed()))
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 2  # exactly one line, newline-terminated
    data = json.loads(lines[0])
    assert data["title"] == TITLE and data["url"] is None
