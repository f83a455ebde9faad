"""Invalid rules are refused at load time with file, line and reason; dead rules warn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from feedwatch.rules import RulesError, RulesWarning, compile_rulebook, load_rulebook

FIXTURES = Path(__file__).parents[1] / "fixtures" / "rules"
INVALID = FIXTURES / "invalid"


@pytest.mark.parametrize(
    ("name", "line", "reason"),
    [
        ("empty_group.toml", 7, "topic 'x': group 'y' has no terms"),
        ("unknown_group.toml", 6, "unknown group 'missing'"),
        ("bad_wildcard.toml", 4, "wildcard 'az*' is shorter than 3 letters"),
        ("bad_toml.toml", 2, "invalid TOML"),
        ("typo_key.toml", 2, "unknown key 'treshold'"),
    ],
)
def test_invalid_files_name_file_line_and_reason(name: str, line: int, reason: str) -> None:
    path = INVALID / name
    with pytest.raises(RulesError) as info:
        load_rulebook(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert reason in message


def test_missing_file() -> None:
    with pytest.raises(RulesError, match="cannot read rules file"):
        load_rulebook(INVALID / "nope.toml")


def _topic(groups: dict[str, Any], clauses: Any, **extra: Any) -> dict[str, Any]:
    return {"topics": {"t": {"groups": groups, "clauses": clauses, **extra}}}


G = {"a": {"terms": ["baku"]}}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({}, "at least one topic"),
        ({"topics": {}}, "at least one topic"),
        ({"settings": {"morphology": "lemma"}, **_topic(G, [{"all": ["a"]}])}, "morphology"),
        ({"settings": {"title_weight": 0}, **_topic(G, [{"all": ["a"]}])}, "title_weight"),
        (_topic({}, [{"all": ["a"]}]), "has no groups"),
        (_topic(G, []), "has no [[topics.t.clauses]]"),
        (_topic(G, [{"none": ["a"]}]), "needs 'all' or 'any'"),
        (_topic(G, [{"all": ["a"], "within": 0}]), "within must be a positive"),
        (_topic(G, [{"all": ["a"], "nearby": 3}]), "unknown key 'nearby'"),
        (_topic(G, [{"all": ["a"]}], threshold=-1), "threshold must be a positive"),
        (_topic({"a": {"terms": ["baku"], "weight": "x"}}, [{"all": ["a"]}]), "weight"),
        (
            _topic({"a": {"terms": [{"term": "baku", "weight": -2}]}}, [{"all": ["a"]}]),
            "weight must be a positive",
        ),
        (_topic({"a": {"terms": [42]}}, [{"all": ["a"]}]), "is not a string"),
        (_topic({"a": {"terms": ["@nolist"]}}, [{"all": ["a"]}]), "unknown list '@nolist'"),
        (_topic({"a": {"terms": ["ba*ku"]}}, [{"all": ["a"]}]), "'*' may only end a word"),
        (_topic({"a": {"terms": ["алиев(а|у"]}}, [{"all": ["a"]}]), "unbalanced parentheses"),
        (_topic({"a": {"terms": ["— !"]}}, [{"all": ["a"]}]), "no letters"),
        (_topic({"a": {"terms": ["  "]}}, [{"all": ["a"]}]), "empty term"),
    ],
)
def test_invalid_structures(data: dict[str, Any], reason: str) -> None:
    with pytest.raises(RulesError) as info:
        compile_rulebook(data, "rules.toml")
    assert str(info.value).startswith("rules.toml")
    assert reason in str(info.value)


def test_self_including_list_is_refused() -> None:
    data = {"lists": {"a": ["@a"]}, **_topic({"g": {"terms": ["@a"]}}, [{"all": ["g"]}])}
    with pytest.raises(RulesError, match="includes itself"):
        compile_rulebook(data)


@pytest.mark.parametrize(
    ("groups", "clauses", "threshold", "warning"),
    [
        (G, [{"all": ["a"]}], 5.0, "below the threshold"),
        (G, [{"all": ["a"], "none": ["a"]}], 1.0, "requires and forbids"),
        ({**G, "b": {"terms": ["moscow"]}}, [{"all": ["a"]}], 1.0, "group 'b' is used by no"),
    ],
)
def test_rules_that_can_never_match_warn(
    groups: dict[str, Any], clauses: Any, threshold: float, warning: str
) -> None:
    with pytest.warns(RulesWarning, match=warning):
        compile_rulebook(_topic(groups, clauses, threshold=threshold), "rules.toml")


def test_shipped_rules_load_without_warnings(recwarn: pytest.WarningsRecorder) -> None:
    rules = Path(__file__).parents[2] / "config" / "rules.toml"
    rb = load_rulebook(rules)
    assert rb.topics == ["russia_azerbaijan", "armenia_normalization"]
    assert not [w for w in recwarn if issubclass(w.category, RulesWarning)]
