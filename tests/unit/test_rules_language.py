"""Every construct of the rule language, table-driven (see feedwatch.rules docstring)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from feedwatch.rules import Hit, Rulebook, compile_rulebook

# Tables share one set of groups and use a few at a time; unused-group warnings are expected.
pytestmark = pytest.mark.filterwarnings("ignore::feedwatch.rules.RulesWarning")


def book(
    groups: dict[str, Any], clauses: list[dict[str, Any]], threshold: float = 1.0, **settings: Any
) -> Rulebook:
    data: dict[str, Any] = {"topics": {"t": {"threshold": threshold, "groups": groups, "clauses": clauses}}}
    if settings:
        data["settings"] = settings
    return compile_rulebook(data, "<test>")


def one_group(*terms: Any) -> Rulebook:
    return book({"g": {"terms": list(terms)}}, [{"all": ["g"]}])


@pytest.mark.parametrize(
    ("term", "text", "fires"),
    [
        # exact word: whole words only, any case, ё = е
        ("baku", "Talks in BAKU today", True),
        ("baku", "Bakuriani ski resort", False),
        ("елка", "Новогодняя ёлка", True),
        # wildcard ending: Russian cases, English derivations, Azerbaijani suffixes, Armenian
        ("азербайджан*", "Азербайджаном и Россией", True),
        ("азербайджан*", "азербайджано-армянской границы", True),
        ("azerbaijan*", "Azerbaijani officials", True),
        ("azerbaijan*", "Azerbaijan's president", True),
        ("azərbaycan*", "Azərbaycanın xarici siyasəti", True),
        ("ermənistan*", "Ermənistanla sülh", True),
        ("ադրբեջան*", "Ադրբեջանի նախագահ", True),
        ("russia*", "Belarussian", False),
        # explicit word forms
        ("алиев(|а|у|ым)", "встреча с Алиевым", True),
        ("алиев(|а|у|ым)", "Алиевой", False),
        ("shush(a|i)", "Shushi", True),
        # phrases: consecutive words; punctuation and hyphens between them do not matter
        ("peace treaty", "a peace treaty was initialled", True),
        ("peace treaty", "peace and a treaty", False),
        ("мирн* договор*", "подписание мирного договора", True),
        ("Azerbaijani-Armenian", "Azerbaijani Armenian relations", True),
        ("azerbaijani armenian", "the Azerbaijani-Armenian border", True),
        ("российско азербайджанск*", "российско-азербайджанских отношениях", True),
        # Azerbaijani dotted capital İ and Armenian ligature fold like the text
        ("ilham", "İlham Əliyev", True),
        ("ալիև*", "Ալիևը հայտարարել է", True),
    ],
)
def test_term_forms(term: str, text: str, fires: bool) -> None:
    assert bool(one_group(term).match(text, "")) is fires


def _groups() -> dict[str, Any]:
    return {
        "ru": {"terms": ["russia*", "moscow"]},
        "az": {"terms": ["azerbaijan*", "baku"]},
        "talk": {"terms": ["talks", "meet*"], "weight": 0.5},
        "list": {"terms": ["kazakhstan"]},
    }


@pytest.mark.parametrize(
    ("clause", "title", "body", "fires"),
    [
        ({"all": ["ru", "az"]}, "Russia and Azerbaijan", "", True),
        ({"all": ["ru", "az"]}, "Russia", "Azerbaijan", True),
        ({"all": ["ru", "az"]}, "Russia", "", False),
        ({"any": ["ru", "az"]}, "Baku", "", True),
        ({"all": ["ru"], "any": ["az", "talk"]}, "Moscow talks", "", True),
        ({"all": ["ru"], "any": ["az", "talk"]}, "Moscow", "", False),
        ({"all": ["ru", "az"], "none": ["list"]}, "Russia, Kazakhstan and Azerbaijan", "", False),
        ({"all": ["ru", "az"], "none": ["list"]}, "Russia and Azerbaijan", "", True),
        # proximity: within N words, same field
        ({"all": ["ru", "az"], "within": 3}, "Russia and Azerbaijan", "", True),
        ({"all": ["ru", "az"], "within": 3}, "Russia said on Monday that Azerbaijan", "", False),
        ({"all": ["ru", "az"], "within": 10}, "Russia", "Azerbaijan", False),
        ({"all": ["ru", "az"], "any": ["talk"], "within": 4}, "Baku talks with Moscow", "", True),
        (
            {"all": ["ru", "az"], "any": ["talk"], "within": 4},
            "Baku and Moscow. A long sentence follows with many words before talks",
            "",
            False,
        ),
    ],
)
def test_clauses(clause: dict[str, Any], title: str, body: str, fires: bool) -> None:
    rb = book(_groups(), [clause])
    assert bool(rb.match(title, body)) is fires


@pytest.mark.parametrize(
    ("title", "body", "threshold", "fires"),
    [
        # group value = best hit: term weight x field weight (title 2, body 1)
        ("Moscow", "", 2.0, True),  # 1 x 2
        ("", "Moscow", 2.0, False),  # 1 x 1
        ("", "Moscow Moscow Moscow", 2.0, False),  # repetition adds nothing
        ("", "Moscow talks", 1.5, True),  # 1 + 0.5
        ("", "Moscow talks", 1.6, False),
    ],
)
def test_weights_fields_threshold(title: str, body: str, threshold: float, fires: bool) -> None:
    rb = book(_groups(), [{"all": ["ru"], "any": ["talk"]}, {"all": ["ru"]}], threshold=threshold)
    assert bool(rb.match(title, body)) is fires


def test_per_term_weight_and_boost() -> None:
    groups = {"g": {"terms": [{"term": "kremlin", "weight": 3.0}, "moscow"]}}
    rb = book(groups, [{"all": ["g"], "boost": 0.5}], threshold=3.5)
    assert rb.match("", "The Kremlin said")[0].score == pytest.approx(3.5)
    assert rb.match("", "Moscow said") == []


def test_title_and_body_weights_are_settings() -> None:
    rb = book({"g": {"terms": ["baku"]}}, [{"all": ["g"]}], threshold=3.0, title_weight=3.0)
    assert rb.match("Baku", "")
    assert not rb.match("", "Baku")


def test_lists_are_included_by_reference() -> None:
    data = {
        "lists": {"az": ["azerbaijan*", "baku"]},
        "topics": {
            "t": {
                "groups": {"g": {"terms": ["@az", {"term": "@az", "weight": 2}]}},
                "clauses": [{"all": ["g"]}],
            }
        },
    }
    rb = compile_rulebook(data)
    m = rb.match("", "Baku")[0]
    assert m.terms == ["baku"]
    assert m.score == 2.0  # the heavier inclusion wins


def test_hits_positions_are_in_the_original_text() -> None:
    rb = one_group("алиев*", "peace treaty")
    title = "Встреча\u00a0с «Алиевым»"
    body = "A PEACE\u2014treaty now"
    m = rb.match(title, body)[0]
    spans = {
        (h.field, title[h.start : h.end] if h.field == "title" else body[h.start : h.end]) for h in m.hits
    }
    assert spans == {("title", "Алиевым"), ("body", "PEACE\u2014treaty")}
    assert isinstance(m.hits[0], Hit)


def test_explanation_is_json_and_complete() -> None:
    rb = book(_groups(), [{"name": "pair", "all": ["ru", "az"], "within": 5}], threshold=2.0)
    m = rb.match("Russia and Azerbaijan hold talks", "Moscow, Baku")[0]
    exp = m.explanation()
    json.dumps(exp)
    assert exp["topic"] == "t"
    assert exp["threshold"] == 2.0
    assert exp["clauses"] == ["pair"]
    assert set(exp["groups"]) == {"ru", "az"}
    assert exp["terms"][:2] == ["russia*", "azerbaijan*"]  # strongest (title) first
    assert exp["snippet"] == "Russia and Azerbaijan hold talks"
    assert {"term", "field", "start", "end", "weight"} <= set(exp["hits"][0])


def test_snippet_is_short_and_around_the_strongest_hit() -> None:
    rb = one_group("baku")
    body = "filler " * 100 + "talks in Baku ended " + "more " * 100
    m = rb.match("", body)[0]
    assert "Baku" in m.snippet
    assert len(m.snippet) <= 210


def test_candidate_needs_a_clause_anchor() -> None:
    rb = book(_groups(), [{"all": ["ru", "az", "talk"]}, {"any": ["list"]}])
    assert rb.candidate("Moscow weather", "")  # first 'all' group of a clause
    assert not rb.match("Moscow weather", "")
    assert rb.candidate("", "Kazakhstan")  # 'any' group of a clause without 'all'
    assert not rb.candidate("Peace talks in Paris", "")  # context words alone
    assert not rb.candidate("Weather in Paris", "nothing here")


@pytest.mark.parametrize(
    ("title", "body", "clauses", "candidate"),
    [
        ("Moscow weather", "", [], True),  # an anchor, no match
        ("", "Kazakhstan", ["clause2"], True),
        ("Peace talks in Paris", "", [], False),  # context words alone
        ("Russia and Azerbaijan talks", "Moscow and Baku held talks", ["clause1"], True),
        ("Russia Azerbaijan", "", [], True),  # anchors, the clause's third group missing
        ("", "", [], False),
    ],
)
def test_assess_answers_match_and_candidate_in_one_scan(
    title: str, body: str, clauses: list[str], candidate: bool
) -> None:
    rb = book(_groups(), [{"all": ["ru", "az", "talk"]}, {"any": ["list"]}])
    matches, is_candidate = rb.assess(title, body)
    assert [c for m in matches for c in m.clauses] == clauses
    assert is_candidate is candidate
    assert is_candidate is rb.candidate(title, body)  # candidate() scans on its own


def test_lang_hint_does_not_change_the_result() -> None:
    rb = one_group("азербайджан*")
    assert rb.match("Азербайджан", "", "en") == rb.match("Азербайджан", "", None)


def test_stem_morphology_compares_stems() -> None:
    rb = book({"g": {"terms": ["россия", "peace treaties"]}}, [{"all": ["g"]}], morphology="stem")
    assert rb.match("Переговоры с Россией", "")
    assert rb.match("", "the peace treaty")
    assert rb.morphology == "stem"


def test_match_is_pure_and_repeatable() -> None:
    rb = one_group("baku")
    assert rb.match("Baku", "") == rb.match("Baku", "")
