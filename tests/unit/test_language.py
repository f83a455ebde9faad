"""Language detection on short (titles) and long (full text) texts in en, ru, az and hy.

The feed's declared language is a hint: it breaks ties on short texts where the detector is
unsure, and loses to the detector on an article's full text.
"""

from __future__ import annotations

import pytest
from support.article_pages import STORIES, Story, render

from feedwatch.extract import extract
from feedwatch.normalize import detect_language

SHORT = [
    ("en", "Armenia and Azerbaijan agree on border delimitation"),
    ("en", "Peace talks resume in Washington"),
    ("ru", "Лавров встретился с Байрамовым"),
    ("ru", "Переговоры продолжатся"),
    ("az", "Bayramov Lavrovla görüşüb"),
    ("az", "Sülh danışıqları davam edir"),
    ("az", "Prezident İlham Əliyev"),
    ("hy", "Միրզոյանը հանդիպել է Բայրամովի հետ"),
    ("hy", "Փաշինյան"),
]


@pytest.mark.parametrize(("lang", "text"), SHORT)
def test_short_texts(lang: str, text: str) -> None:
    assert detect_language(text) == lang
    assert detect_language(text, hint=lang) == lang


@pytest.mark.parametrize("story", STORIES, ids=lambda s: s.key)
def test_long_texts(story: Story) -> None:
    text = "\n".join(story.paragraphs)
    assert len(text) > 200
    assert detect_language(text) == story.lang


@pytest.mark.parametrize("story", STORIES, ids=lambda s: s.key)
@pytest.mark.parametrize("wrong", ["en", "ru", "tr"])
def test_a_wrong_declared_language_loses_on_full_text(story: Story, wrong: str) -> None:
    """A feed declaring the wrong language (multilingual outlets often declare one for all)."""
    text = "\n".join(story.paragraphs)
    assert detect_language(text, hint=wrong) == story.lang


def test_hint_breaks_ties_on_names_only() -> None:
    # Two surnames are not English to the detector; the feed's hint decides.
    assert detect_language("Lavrov meets Bayramov") != "en"
    assert detect_language("Lavrov meets Bayramov", hint="en") == "en"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Azerbaijani without the schwa reads as Turkish to langid; with it, the fix applies.
        ("Azərbaycan və Ermənistan arasında sülh sazişi imzalanıb", "az"),
        ("", None),
        ("2025 — 14:30", None),
    ],
)
def test_edge_cases(text: str, expected: str | None) -> None:
    assert detect_language(text) == expected


@pytest.mark.parametrize("story", STORIES, ids=lambda s: s.key)
def test_extracted_language_ignores_a_wrong_hint(story: Story) -> None:
    wrong = "ru" if story.lang != "ru" else "en"
    found = extract(render(story), None, content_type="text/html", language_hint=wrong)
    assert found.language == story.lang
