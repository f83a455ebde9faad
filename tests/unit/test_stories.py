"""Near-duplicate stories: signatures are stable and tell copies from different stories."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session
from support.settings import database_settings
from support.stories import add_article, add_copy, add_feed, add_story, draft

from feedwatch import db, pipeline, stories
from feedwatch.rules import load_rulebook
from feedwatch.textnorm import Words, split_words

BASE = (
    "Russian Foreign Minister Sergey Lavrov and his Azerbaijani counterpart Jeyhun Bayramov met in "
    "Moscow on Monday to discuss bilateral cooperation, the normalization of Azerbaijani-Armenian "
    "relations, the unblocking of transport links and the delimitation of the border."
)
TITLE = "Lavrov and Bayramov hold talks in Moscow on Monday"
NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("title", "text", "copy"),
    [
        (TITLE, BASE, True),  # identical
        (TITLE.upper(), BASE + " (Reuters)", True),  # case, an agency tag
        ("Lavrov, Bayramov meet", BASE.replace("Monday", "Tuesday") + " Read more on our site.", True),
        (TITLE, "Short teaser only.", True),  # same long headline
        ("Bayramov visits Yerevan", "Talks on the peace treaty draft continued in Yerevan today.", False),
        ("Weather", "Heavy rain is expected over the weekend in Baku and Moscow.", False),
    ],
)
def test_copy_or_new_story(title: str, text: str, copy: bool) -> None:
    first = stories.signature(TITLE, BASE)
    other = stories.signature(title, text)
    shares_key = bool(set(first.keys) & set(other.keys))
    similar = stories.similarity(first.hashvalues, other.hashvalues) >= stories.StoryPolicy().threshold
    title_same = any(k.startswith("t:") and k in first.keys for k in other.keys)
    assert (shares_key and (similar or title_same)) == copy


def test_signature_is_stable_across_calls() -> None:
    assert stories.signature(TITLE, BASE) == stories.signature(TITLE, BASE)
    assert len(stories.signature(TITLE, BASE).hashvalues) == stories.NUM_PERM


def test_short_titles_get_no_title_key() -> None:
    assert not any(k.startswith("t:") for k in stories.signature("Talks", "").keys)
    assert stories.signature("", "").hashvalues  # empty text still signs


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    with database_settings("sqlite", tmp_path) as settings, db.session_scope(settings) as s:
        yield s


def test_lookup_in_the_database_respects_the_window(session: Session) -> None:
    feed = add_feed(session, "Outlet A")
    alert_id = add_story(session, feed, "k1", TITLE, BASE, NOW)
    policy = stories.StoryPolicy(window=timedelta(hours=48))
    copy = stories.signature(TITLE, BASE + " (AFP)")
    found = stories.find_story(session, copy, NOW + timedelta(hours=47), policy)
    assert found is not None and found[0] == alert_id
    assert stories.find_story(session, copy, NOW + timedelta(hours=49), policy) is None

    second = add_article(session, feed, "k2", TITLE, NOW)
    assert feed.id is not None and second.id is not None
    add_copy(session, alert_id, second.id, feed.id, found[1], NOW)
    session.flush()
    copies = stories.also_reported_many(session, [alert_id])
    assert [c.outlet for c in copies[alert_id]] == ["Outlet A"]


def test_signature_values_and_keys_do_not_change() -> None:
    """Stored bands and signatures must keep matching what a new version computes: the values
    and keys of one signature, as the first version computed them."""
    sig = stories.signature(TITLE, BASE[:100])
    assert sig.hashvalues[:4] == [175938457, 229091733, 265900101, 108756516]
    assert sig.keys[:2] == ["0:a27518bfa8541410f0302a5a", "1:dd960d8126177138f0b9e5f0"]
    assert sig.keys[-1] == "t:a11827ca022216897e47ae1c"
    digest = hashlib.sha256(repr((sig.hashvalues, sig.keys)).encode()).hexdigest()
    assert digest == "14d82597d0787496406ba79a4611822acb31cbcda28780abdb858ee2c47e9dd7"


def test_signatures_of_a_batch_are_each_articles_own() -> None:
    articles = [(TITLE, BASE), ("", ""), ("Talks", ""), (TITLE.upper(), BASE + " (AFP)"), ("a b", "c")]
    assert stories.signatures(articles) == [stories.signature(t, x) for t, x in articles]
    assert stories.signatures([]) == []


def test_signatures_take_the_folded_words_they_are_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """The words the rules cut (``pipeline.match_drafts``) are not cut again; a text not given
    is cut here."""
    articles = [(TITLE, BASE), (TITLE.upper(), BASE + " (AFP)"), ("", "")]
    folded = {text: split_words(text).folded for pair in articles for text in pair}
    expected = stories.signatures(articles)
    cut: list[str] = []

    def counted(text: str) -> Words:
        cut.append(text)
        return split_words(text)

    monkeypatch.setattr(stories, "split_words", counted)
    assert stories.signatures(articles, folded) == expected
    assert cut == []
    assert stories.signatures(articles, {TITLE: folded[TITLE]}) == expected
    assert sorted(cut) == sorted(["", "", TITLE.upper(), BASE, BASE + " (AFP)"])


def test_the_rules_keep_the_words_of_a_matched_drafts_fields_only() -> None:
    """``pipeline.match_drafts`` hands the signatures the words it cut for the drafts that
    matched, and only those: a field it turned away or a draft that matched nothing adds none."""
    rulebook = load_rulebook(Path(__file__).resolve().parents[2] / "config" / "rules.toml")
    flagged = draft("a", TITLE, BASE)
    near = draft("b", "Lavrov visits Paris", "Russian Foreign Minister Sergey Lavrov met his French peer.")
    plain = draft("c", "City council approves new budget for parks", "Work begins in spring.")
    assessed = pipeline.match_drafts(rulebook, [near, flagged, plain])
    assert set(assessed.matched) == {"a"}
    assert assessed.folded == {TITLE: split_words(TITLE).folded, BASE: split_words(BASE).folded}
    flagged_texts = [(TITLE, BASE)]
    assert stories.signatures(flagged_texts, assessed.folded) == stories.signatures(flagged_texts)
