"""Channels without services: escaping per format, configuration, signatures, routing, holding."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from feedwatch import alerts, db, metrics
from feedwatch.channels import AlertPayload, DigestPayload, Route, TopicReason, render
from feedwatch.channels.config import ChannelConfigError, load_channel_configs
from feedwatch.channels.webhook import redact, sign, verify
from feedwatch.models import Alert, Article, Delivery, DigestItem, Feed, Match
from feedwatch.settings import Settings

ZW_HERE = "@\u200bhere"
HOSTILE = 'Evil <script>alert(1)</script> *bold* _x_ [a](javascript:x) <!channel> @here & "q"\r\nBcc: x@y'


def payload(title: str = HOSTILE, url: str | None = "https://example.org/a?b=1&c=2") -> AlertPayload:
    snippet = "met Lavrov <b>today</b>"
    reason = TopicReason("russia_azerbaijan", 3.0, ["Lavrov"], snippet, highlights=[(4, 10)])
    return AlertPayload(
        alert_id=7,
        idempotency_key="feedwatch-alert-7",
        topics=["russia_azerbaijan", "armenia_normalization"],
        title=title,
        url=url,
        feed="Outlet <i>",
        feed_url="https://example.org/feed",
        published_at="2025-05-01T12:00:00Z",
        language="en",
        reasons=[reason],
    )


@pytest.mark.parametrize(
    ("fmt", "present", "absent"),
    [
        ("html", ["&lt;script&gt;", "<b>Lavrov</b>", "&lt;b&gt;today", ZW_HERE], ["<script>", "<!chan"]),
        ("slack", ["&lt;!channel&gt;", "*\u200bbold*\u200b", "*Lavrov*", ZW_HERE], ["<!chan", "<script>"]),
        ("markdown", [r"\*bold\*", r"\[a\]", "&lt;script&gt;", "**Lavrov**"], ["<script>", "[a](javascript"]),
        ("text", ["«Lavrov»", "<script>"], ["\r", "@here"]),
    ],
)
def test_feed_text_is_escaped_for_each_format(
    fmt: render.Format, present: list[str], absent: list[str]
) -> None:
    body = render.alert_body(payload(), fmt)
    for piece in present:
        assert piece in body, (piece, body)
    for piece in absent:
        assert piece not in body, (piece, body)


def test_title_is_one_line_and_truncated() -> None:
    title = render.title(payload(HOSTILE + "x" * 500))
    assert "\r" not in title and "\n" not in title
    assert len(title) <= render.TITLE_CHARS


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://example.org/x", True),
        ("http://example.org/x", True),
        ("javascript:alert(1)", False),
        ("data:text/html,x", False),
        ("https://exa mple.org/", False),
        (None, False),
    ],
)
def test_only_http_links_are_shown(url: str | None, shown: bool) -> None:
    assert (render.safe_url(url) is not None) == shown
    body = render.alert_body(payload(url=url), "html")
    assert ("href=" in body) == shown


def test_alert_json_is_asdict_plus_topic_and_matched_terms() -> None:
    """``AlertPayload.to_json`` is built field by field (asdict was ~40 % of a delivery's CPU):
    it must give what asdict gives, for every field, with copies of the lists."""
    import dataclasses

    from feedwatch.channels.base import Copy

    second = TopicReason("armenia_normalization", 2.5, ["Pashinyan", "Lavrov"], "x", "full_text", [(0, 1)])
    a = dataclasses.replace(
        payload(),
        reasons=[*payload().reasons, second],
        also_reported=[Copy("Other outlet", "Same story", None, "2025-05-01T12:05:00Z")],
    )
    data = a.to_json()
    extra = {"topic": "russia_azerbaijan", "matched_terms": ["Lavrov", "Pashinyan"]}
    assert data == {**dataclasses.asdict(a), **extra}
    data["topics"].append("changed")
    data["reasons"][0]["terms"].append("changed")
    assert a.topics == ["russia_azerbaijan", "armenia_normalization"] and a.reasons[0].terms == ["Lavrov"]


def test_digest_groups_by_topic() -> None:
    a = payload()
    b = AlertPayload(**{**a.__dict__, "alert_id": 8, "topics": ["armenia_normalization"]})
    digest = DigestPayload("feedwatch-digest-1", "mail", "digest", "2025-05-01T12:00:00Z", [a, a, b])
    groups = digest.by_topic()
    assert {k: len(v) for k, v in groups.items()} == {"russia_azerbaijan": 2, "armenia_normalization": 1}
    body = render.digest_body(digest, "markdown")
    assert "russia\\_azerbaijan \\(2\\)" in body and "feedwatch\\-digest\\-1" in body


def test_signature_round_trip_and_redaction() -> None:
    sig = sign(b"s3cret", "1714564800", b'{"a":1}')
    assert sig.startswith("sha256=") and verify(b"s3cret", "1714564800", b'{"a":1}', sig)
    assert not verify(b"s3cret", "1714564801", b'{"a":1}', sig)
    assert redact("https://user:pw@hooks.example.org/T0K3N?x=1") == "https://hooks.example.org/…"


def test_config_keeps_secrets_out_of_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "c.toml"
    bad.write_text('[[channels]]\nname = "s"\ntype = "apprise"\nurl = "slack://a/b/c"\n')
    with pytest.raises(ChannelConfigError, match="url_env"):
        load_channel_configs(bad)
    dupe = tmp_path / "d.toml"
    dupe.write_text('[[channels]]\nname = "x"\ntype = "console"\n[[channels]]\nname = "x"\ntype = "jsonl"\n')
    with pytest.raises(ChannelConfigError, match="duplicate"):
        load_channel_configs(dupe)


def test_example_file_is_valid() -> None:
    configs = load_channel_configs(Path(__file__).resolve().parents[2] / "config" / "channels.example.toml")
    assert {c.type for c in configs} == {"console", "jsonl", "apprise", "webhook", "redis_stream"}


def test_backoff_doubles_with_jitter_and_cap() -> None:
    rng = random.Random(1)
    for attempts in range(1, 12):
        delay = alerts.backoff(attempts, rng)
        top = min(alerts.BACKOFF_CAP, alerts.BACKOFF_BASE * 2 ** (attempts - 1))
        assert top / 2 <= delay <= top


def test_cut_time_floors_to_the_period() -> None:
    now = datetime(2025, 5, 1, 12, 34, 56, tzinfo=UTC)
    assert alerts.cut_time(now, timedelta(hours=1)) == datetime(2025, 5, 1, 12, tzinfo=UTC)
    assert alerts.cut_time(now, timedelta(days=1)) == datetime(2025, 5, 1, tzinfo=UTC)


# --- deliver() on SQLite with in-memory channels -----------------------------------------------------


@dataclass
class Recorder:
    name: str
    route: Route = field(default_factory=Route)
    fail: int = 0
    sent: list[int] = field(default_factory=list)
    digests: list[DigestPayload] = field(default_factory=list)

    def send(self, p: AlertPayload) -> None:
        if self.fail > 0:
            self.fail -= 1
            raise RuntimeError("receiver down")
        self.sent.append(p.alert_id)

    def send_digest(self, d: DigestPayload) -> None:
        self.digests.append(d)


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    s = Settings(home=tmp_path)
    db.upgrade(s)
    yield s
    db.dispose_engines()


def make_alerts(s: Settings, topics: list[list[str]], at: datetime) -> list[int]:
    ids = []
    with db.session_scope(s) as session:
        feed = Feed(config_url="http://f/", url="http://f/", name="F")
        session.add(feed)
        session.flush()
        for i, ts in enumerate(topics):
            art = Article(
                identity_key=f"k{i}", feed_id=feed.id or 0, title=f"T{i}", published_at=at, content_hash="h"
            )
            session.add(art)
            session.flush()
            for t in ts:
                session.add(Match(article_id=art.id or 0, topic=t, score=1.0, snippet="s"))
            alert = Alert(article_id=art.id or 0, topics=ts, created_at=at)
            session.add(alert)
            session.flush()
            ids.append(alert.id or 0)
    return ids


def test_routing_retry_and_no_resend(settings: Settings) -> None:
    now = datetime(2025, 5, 1, 12, tzinfo=UTC)
    [alert_id] = make_alerts(settings, [["armenia_normalization"]], now)
    ok = Recorder("ok")
    flaky = Recorder("flaky", fail=1)
    other = Recorder("other", Route(topics=frozenset({"russia_azerbaijan"})))
    channels = [ok, flaky, other]
    sent_before = _deliveries("flaky", "sent")
    retrying_before = _deliveries("flaky", "retrying")
    with pytest.raises(alerts.DeliveryIncomplete) as exc:
        alerts.deliver(alert_id, channels, settings, lambda: now)
    assert 1 <= exc.value.countdown <= alerts.BACKOFF_BASE
    # not due yet: nothing is re-sent, still incomplete
    with pytest.raises(alerts.DeliveryIncomplete):
        alerts.deliver(alert_id, channels, settings, lambda: now)
    later = now + timedelta(minutes=5)
    report = alerts.deliver(alert_id, channels, settings, lambda: later)
    assert report.status == "delivered"
    assert ok.sent == [alert_id] and flaky.sent == [alert_id] and other.sent == []
    # every attempt's result is counted for /metrics
    assert _deliveries("flaky", "retrying") == retrying_before + 1
    assert _deliveries("flaky", "sent") == sent_before + 1


def _deliveries(channel: str, status: str) -> float:
    return float(metrics.DELIVERIES.labels(channel, status)._value.get())


def test_dead_letter_after_max_attempts(settings: Settings) -> None:
    now = datetime(2025, 5, 1, 12, tzinfo=UTC)
    [alert_id] = make_alerts(settings, [["russia_azerbaijan"]], now)
    down = Recorder("down", fail=100)
    for i in range(alerts.MAX_ATTEMPTS):
        try:
            report = alerts.deliver(alert_id, [down], settings, lambda i=i: now + timedelta(hours=i))
        except alerts.DeliveryIncomplete:
            continue
    assert report.status == "failed"
    with db.session_scope(settings) as session:
        row = session.exec(select(Delivery)).one()
        assert row.status == "dead" and "receiver down" in (row.last_error or "")
        assert alerts.retry_alerts(session, None) == [alert_id]


@dataclass
class BatchRecorder(Recorder):
    """A channel that takes a batch in one call (``send_many``), as the JSONL channel does."""

    batches: list[list[int]] = field(default_factory=list)

    def send_many(self, payloads: list[AlertPayload]) -> None:
        if self.fail > 0:
            self.fail -= 1
            raise RuntimeError("disk full")
        self.batches.append([p.alert_id for p in payloads])


def test_a_batch_goes_to_send_many_in_one_call_and_fails_as_one(settings: Settings) -> None:
    now = datetime(2025, 5, 1, 12, tzinfo=UTC)
    ids = make_alerts(settings, [["russia_azerbaijan"]] * 3, now)
    down, file = BatchRecorder("down", fail=1), BatchRecorder("file")
    batch = alerts.deliver_many(ids, [down, file], settings, lambda: now)
    assert file.batches == [ids] and file.sent == []  # one call, not one send per alert
    assert down.batches == [] and sorted(batch.retry_ids) == ids  # its failure is each alert's
    with db.session_scope(settings) as session:
        rows = session.exec(select(Delivery).where(Delivery.channel == "down")).all()
        assert {(r.alert_id, r.status, r.attempts) for r in rows} == {(i, "retrying", 1) for i in ids}
        assert all("disk full" in (r.last_error or "") for r in rows)
    later = now + timedelta(hours=1)
    batch = alerts.deliver_many(ids, [down, file], settings, lambda: later)
    assert down.batches == [ids] and file.batches == [ids]  # the file is not written twice
    assert {r.status for r in batch.reports} == {"delivered"}


def test_jsonl_send_many_appends_one_line_per_alert(tmp_path: Path) -> None:
    import dataclasses
    import json

    from feedwatch.channels.jsonl import JsonlChannel

    channel = JsonlChannel(tmp_path / "alerts.jsonl")
    channel.send(payload())
    channel.send_many(
        [dataclasses.replace(payload(), alert_id=i, idempotency_key=f"feedwatch-alert-{i}") for i in (8, 9)]
    )
    lines = (tmp_path / "alerts.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["alert_id"] for r in records] == [7, 8, 9]
    assert [r["idempotency_key"] for r in records] == [f"feedwatch-alert-{i}" for i in (7, 8, 9)]
    assert all(r["delivered_at"] and r["title"] == HOSTILE for r in records)


def test_burst_is_held_and_summarized_once(settings: Settings) -> None:
    now = datetime(2025, 5, 1, 12, 0, 10, tzinfo=UTC)
    ids = make_alerts(settings, [["russia_azerbaijan"]] * 6, now)
    chat = Recorder("chat", Route(max_per_minute=2))
    for alert_id in ids:
        alerts.deliver(alert_id, [chat], settings, lambda: now)
    assert chat.sent == ids[:2]
    assert alerts.send_digests([chat], settings, lambda: now) == []  # the minute is not over
    after = now + timedelta(minutes=1)
    reports = alerts.send_digests([chat], settings, lambda: after)
    assert [(r.kind, r.alerts, r.sent) for r in reports] == [("burst", 4, True)]
    assert alerts.send_digests([chat], settings, lambda: after + timedelta(minutes=5)) == []
    assert [a.alert_id for a in chat.digests[0].alerts] == ids[2:]
    with db.session_scope(settings) as session:
        assert {d.status for d in session.exec(select(Delivery)).all()} == {"sent"}


def test_digest_channel_groups_each_alert_once(settings: Settings) -> None:
    now = datetime(2025, 5, 1, 12, 10, tzinfo=UTC)
    topics = [["russia_azerbaijan"], ["armenia_normalization"], ["russia_azerbaijan"]]
    ids = make_alerts(settings, topics, now)
    mail = Recorder("mail", Route(mode="digest", every="hourly"), fail=0)
    for alert_id in ids:
        assert alerts.deliver(alert_id, [mail], settings, lambda: now).held == ("mail",)
    assert mail.sent == []
    assert alerts.send_digests([mail], settings, lambda: now + timedelta(minutes=5)) == []
    top = datetime(2025, 5, 1, 13, 0, 30, tzinfo=UTC)
    [report] = alerts.send_digests([mail], settings, lambda: top)
    assert report.alerts == 3
    groups = mail.digests[0].by_topic()
    assert {k: len(v) for k, v in groups.items()} == {"russia_azerbaijan": 2, "armenia_normalization": 1}
    assert alerts.send_digests([mail], settings, lambda: top + timedelta(hours=1)) == []
    with db.session_scope(settings) as session:
        items = session.exec(select(DigestItem)).all()
        assert len(items) == 3 and len({i.digest_id for i in items}) == 1
