"""``benchmarks/run.py``'s seeded poll histories: ``hourly_history`` is what this checkout's
``feedstate`` leaves on a news feed with an item an hour (``simulate_schedule.history_after``),
moved to end now and answered as the farm's kind answers."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise

import pytest
from support.bench import bench_module
from support.services import REPO

from feedwatch import feedstate
from feedwatch.timeutil import parse_utc

run = bench_module("run")
NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _scripts_on_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """As when ``run.py`` runs as a script: it imports ``simulate_schedule`` beside it."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))


@pytest.mark.parametrize(
    ("kind", "outcome", "status"), [("304", "not_modified", 304), ("unchanged", "unchanged", 200)]
)
def test_an_hourly_history_ends_now_with_the_kinds_quiet_polls(kind: str, outcome: str, status: int) -> None:
    history = run.hourly_history(kind, NOW, 10.0)
    assert history[-1]["at"] == NOW.isoformat(timespec="seconds")
    assert sum(int(h.get("n", 1)) for h in history) == feedstate.HISTORY
    times = [parse_utc(h["at"]) for h in history]
    assert times == sorted(times)
    assert all(parse_utc(h["since"]) < parse_utc(h["at"]) for h in history if "since" in h)
    quiet = [h for h in history if h["outcome"] != "ok"]
    found = [h for h in history if h["outcome"] == "ok"]
    # An item an hour at ~10 min intervals: polls that found one between runs of quiet ones.
    assert quiet and found
    assert {(h["outcome"], h["status"]) for h in quiet} == {(outcome, status)}
    assert {h["status"] for h in found} == {200} and all(h["new"] >= 1 for h in found)
    # Folded as the service folds: no two quiet entries in a row.
    assert all(a["outcome"] == "ok" or b["outcome"] == "ok" for a, b in pairwise(history))


def test_the_other_kinds_keep_the_steady_history() -> None:
    assert run.hourly_history("new", NOW, 10.0) == run.steady_history("new", NOW, 10.0)
