"""``feedwatch rules eval`` and ``rules test`` through click's CliRunner, on small fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from feedwatch.rules import load_rulebook
from feedwatch.rules.commands import rules
from feedwatch.rules.evaluate import Counts, evaluate, read_labeled

FIXTURES = Path(__file__).parents[1] / "fixtures" / "rules"
MINI = str(FIXTURES / "mini.toml")
SMALL = str(FIXTURES / "small.jsonl")


def run(*args: str) -> str:
    result = CliRunner().invoke(rules, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_eval_json_figures() -> None:
    out = json.loads(run("eval", SMALL, "--json", "--rules", MINI))
    pair = out["topics"]["pair"]
    # mini.toml is the naive co-occurrence rule: two found, the far-apart pair missed, the
    # "Russia, Kazakhstan and Azerbaijan" list flagged, the weather item left alone
    assert (pair["tp"], pair["fp"], pair["fn"]) == (2, 1, 1)
    assert pair["precision"] == pytest.approx(2 / 3, abs=1e-3)
    assert pair["recall"] == pytest.approx(2 / 3, abs=1e-3)
    assert pair["f1"] == pytest.approx(2 / 3, abs=1e-3)
    assert set(out["by_lang"]) == {"en", "ru"}
    assert out["by_lang"]["ru"]["pair"]["fn"] == 1
    assert set(out["by_lang"]["en"]["pair"]) == {"precision", "recall", "f1", "tp", "fp", "fn"}


def test_eval_human_output_lists_misses() -> None:
    out = run("eval", SMALL, "--rules", MINI)
    assert "Misses: 1" in out
    assert "False alarms: 1" in out
    assert "Азербайджан и Турция" in out


def test_eval_with_stem_morphology_runs() -> None:
    out = json.loads(run("eval", SMALL, "--json", "--rules", MINI, "--morphology", "stem"))
    assert "pair" in out["topics"]


def test_eval_reports_bad_rules_cleanly(tmp_path: Path) -> None:
    bad = tmp_path / "rules.toml"
    bad.write_text("[topics.x.groups.a]\nterms = []\n", encoding="utf-8")
    result = CliRunner().invoke(rules, ["eval", SMALL, "--rules", str(bad)])
    assert result.exit_code != 0
    assert f"{bad}:1: topic 'x': group 'a' has no terms" in result.output


def test_eval_reports_bad_jsonl(tmp_path: Path) -> None:
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"title": "a", "topics": []}\nnot json\n', encoding="utf-8")
    result = CliRunner().invoke(rules, ["eval", str(bad), "--rules", MINI])
    assert result.exit_code != 0
    assert f"{bad}:2: not JSON" in result.output


def test_test_command_highlights_and_json() -> None:
    out = run("test", "Russia and Azerbaijan hold talks", "--rules", MINI)
    assert "pair" in out
    assert "russia*" in out
    exp = json.loads(run("test", "Russia and Azerbaijan", "--json", "--rules", MINI))
    assert exp[0]["topic"] == "pair"
    assert exp[0]["hits"][0]["start"] == 0


def test_test_command_reads_a_file(tmp_path: Path) -> None:
    item = tmp_path / "item.txt"
    item.write_text("Weather\nRussia and Azerbaijan sign a deal\n", encoding="utf-8")
    assert "pair" in run("test", "--file", str(item), "--rules", MINI)
    assert "no topic matched" in run("test", "Weather in Baku", "--rules", MINI)


def test_evaluate_api_and_counts() -> None:
    report = evaluate(load_rulebook(Path(MINI)), read_labeled(Path(SMALL)))
    assert report.items == 5
    assert [e.kind for e in report.errors] == ["miss", "false_alarm"]
    assert Counts().as_dict()["f1"] == 1.0  # nothing to find, nothing found
