"""feedwatch.extract: story text out of realistic pages, decoding, fallback, limits, failures."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
from support.article_pages import (
    BODY_ONLY_EN,
    BODY_ONLY_RU,
    CANDIDATE_ONLY_EN,
    NAV_ONLY_PAGE,
    PLAIN_TITLE_EN,
    STORIES,
    Story,
    render,
)

from feedwatch import extract as extract_module
from feedwatch.extract import MAX_TEXT_BYTES, ExtractionError, decode_html, extract, paragraphs
from feedwatch.normalize import html_to_text
from feedwatch.rules import Rulebook, load_rulebook

ROOT = Path(__file__).resolve().parents[2]
BOILERPLATE = ("cookies", "Advertisement", "Putin and Aliyev", "All rights reserved", "Share on", "Most read")


@pytest.fixture(scope="module")
def rulebook() -> Rulebook:
    return load_rulebook(ROOT / "config" / "rules.toml")


@pytest.mark.parametrize("story", STORIES, ids=lambda s: s.key)
def test_story_text_without_boilerplate(story: Story) -> None:
    found = extract(render(story), f"https://example.org/{story.key}", content_type="text/html")
    for paragraph in story.paragraphs:
        assert paragraph in found.text
    for junk in BOILERPLATE:
        assert junk not in found.text
    assert found.title == story.title
    assert found.language == story.lang
    assert found.date == story.date
    assert found.method == "trafilatura"


def test_metadata_author() -> None:
    found = extract(render(BODY_ONLY_RU), None, content_type="text/html")
    assert found.author == BODY_ONLY_RU.author


@pytest.mark.parametrize(
    "content_type",
    ["text/html", "text/html; charset=windows-1251", None],
    ids=["meta-only", "header", "no-header"],
)
def test_cyrillic_windows_1251(content_type: str | None) -> None:
    body = render(BODY_ONLY_RU)
    assert body.decode("cp1251").startswith("<!DOCTYPE")
    found = extract(body, None, content_type=content_type)
    assert BODY_ONLY_RU.paragraphs[2] in found.text


UNDECLARED = (
    "<!DOCTYPE html><html><head><title>Новости</title></head><body><p>Министр иностранных дел"
    " России встретился с коллегой из Азербайджана в Баку, чтобы обсудить вопросы двусторонних"
    " отношений и региональной безопасности.</p></body></html>"
)


@pytest.mark.parametrize("encoding", ["cp1251", "koi8-r", "utf-8"])
@pytest.mark.parametrize("url", [None, "https://lenta.example.ru/news/1"])
def test_a_page_without_a_declared_charset_is_guessed(encoding: str, url: str | None) -> None:
    # No BOM, no charset in the header or the page: w3lib guesses as a browser does.
    assert decode_html(UNDECLARED.encode(encoding), "text/html", url) == UNDECLARED


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"title": "Armenia"}', "application/json"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"),
        (b"%PDF-1.7 ...", "application/pdf"),
        (b"\x00\x01binary junk served as html", "text/html"),
        (b"just words, no markup at all", "text/html"),
    ],
)
def test_not_html(body: bytes, content_type: str) -> None:
    with pytest.raises(ExtractionError) as info:
        extract(body, None, content_type=content_type)
    assert info.value.error_class == "not_html"


@pytest.mark.parametrize("body", [NAV_ONLY_PAGE, b"<html><body></body></html>", b"<html>"])
def test_empty(body: bytes) -> None:
    with pytest.raises(ExtractionError) as info:
        extract(body, None, content_type="text/html")
    assert info.value.error_class == "empty"


def test_fallback_when_trafilatura_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(html: str, url: str | None) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(extract_module, "_trafilatura", broken)
    found = extract(render(BODY_ONLY_EN), None, content_type="text/html")
    assert found.method == "fallback"
    assert found.note is not None and "RuntimeError" in found.note
    assert BODY_ONLY_EN.paragraphs[2] in found.text
    for junk in BOILERPLATE:
        assert junk not in found.text
    assert found.title is not None and found.title.startswith(BODY_ONLY_EN.title)  # from <title>
    assert found.language == "en"


def test_fallback_when_trafilatura_runs_out_of_time(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(html: str, url: str | None) -> Any:
        time.sleep(5)  # interrupted by the timer
        raise AssertionError("the time limit did not fire")

    monkeypatch.setattr(extract_module, "_trafilatura", slow)
    before = signal.getsignal(signal.SIGALRM)
    outer = signal.getitimer(signal.ITIMER_REAL)[0]
    found = extract(render(BODY_ONLY_EN), None, content_type="text/html", time_limit=0.2)
    assert found.method == "fallback"
    assert found.note == "trafilatura over 0.2s"
    assert BODY_ONLY_EN.paragraphs[2] in found.text
    # pytest-timeout's own SIGALRM handler and timer (if any) are back in place
    assert signal.getsignal(signal.SIGALRM) is before
    assert signal.getitimer(signal.ITIMER_REAL)[0] == pytest.approx(outer, abs=2)


def test_input_is_cut_at_max_chars() -> None:
    page = render(BODY_ONLY_EN).replace(b"<main>", b"<main>" + b"<span></span>" * 5_000)
    assert BODY_ONLY_EN.paragraphs[2] in extract(page, None, content_type="text/html").text
    try:
        cut = extract(page, None, content_type="text/html", max_chars=40_000).text
    except ExtractionError:
        cut = ""
    assert BODY_ONLY_EN.paragraphs[2] not in cut


def test_text_is_capped() -> None:
    found = extract(render(BODY_ONLY_EN, filler_paragraphs=3000), None, content_type="text/html")
    assert len(found.text.encode()) <= MAX_TEXT_BYTES
    assert found.text.startswith(BODY_ONLY_EN.paragraphs[0])


def test_paragraphs_prefers_article() -> None:
    html = (
        "<html><body><div class='x'><p>Outside the article, a long paragraph about other things.</p>"
        "</div><article><p>Inside the article, the paragraph that tells the story.</p></article>"
        "</body></html>"
    )
    assert paragraphs(html) == "Inside the article, the paragraph that tells the story."


# --- the point of the stage: rules see the story, and only the story ---------------------------


@pytest.mark.parametrize(
    ("story", "topic"),
    [(s, "armenia_normalization") for s in STORIES if s.key.startswith("body-only") and s.lang != "ru"]
    + [(BODY_ONLY_RU, "russia_azerbaijan")],
    ids=lambda v: v.key if isinstance(v, Story) else v,
)
def test_topic_only_in_the_body(rulebook: Rulebook, story: Story, topic: str) -> None:
    # The feed item is a candidate that does not match on title + teaser ...
    assert rulebook.candidate(story.title, story.teaser), "rules changed: no longer a candidate"
    assert not rulebook.match(story.title, story.teaser, story.lang)
    # ... and matches once the page is read, with a snippet from the body.
    found = extract(render(story), None, content_type="text/html")
    matches = {m.topic: m for m in rulebook.match(story.title, found.text, found.language)}
    assert set(matches) == {topic}
    assert any(h.field == "body" for h in matches[topic].hits)


def test_boilerplate_would_have_matched(rulebook: Rulebook) -> None:
    """The comments and sidebar name Putin, Aliyev and Moscow: reading the whole page would flag
    the English story for russia_azerbaijan; the extracted text does not."""
    whole_page = html_to_text(render(BODY_ONLY_EN).decode())
    assert "russia_azerbaijan" in {m.topic for m in rulebook.match(BODY_ONLY_EN.title, whole_page)}
    found = extract(render(BODY_ONLY_EN), None, content_type="text/html")
    assert "russia_azerbaijan" not in {m.topic for m in rulebook.match(BODY_ONLY_EN.title, found.text)}


def test_no_match_for_an_unrelated_story(rulebook: Rulebook) -> None:
    found = extract(render(CANDIDATE_ONLY_EN), None, content_type="text/html")
    assert rulebook.candidate(CANDIDATE_ONLY_EN.title, CANDIDATE_ONLY_EN.teaser)
    assert not rulebook.match(CANDIDATE_ONLY_EN.title, found.text, found.language)


def test_full_text_feed_item_is_not_a_candidate(rulebook: Rulebook) -> None:
    """Why ``full_text = true`` feeds exist: nothing in the title or teaser hints at the topic."""
    assert not rulebook.candidate(PLAIN_TITLE_EN.title, PLAIN_TITLE_EN.teaser)
    found = extract(render(PLAIN_TITLE_EN), None, content_type="text/html")
    assert rulebook.match(PLAIN_TITLE_EN.title, found.text, found.language)
