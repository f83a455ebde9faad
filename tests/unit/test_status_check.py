"""check_status: the rules that make `feedwatch status --check` fail, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from feedwatch.settings import Settings
from feedwatch.status import check_status


def healthy() -> dict[str, Any]:
    return {
        "database": {"ok": True, "error": None},
        "broker": {"ok": True, "error": None},
        "beat": {"last_tick_at": "2026-01-01T00:00:00Z", "age_seconds": 3.0, "late": False},
        "workers": {"ok": True, "error": None, "count": 1, "answered": [{"name": "w@h"}]},
        "alerts": {"oldest_backlog_age_seconds": 10.0},
    }


def with_(**sections: dict[str, Any] | None) -> dict[str, Any]:
    """A healthy report with some sections updated (a dict merges, None replaces)."""
    report = healthy()
    for name, value in sections.items():
        report[name] = None if value is None else {**report[name], **value}
    return report


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    return Settings(home=tmp_path, beat_late_seconds=60, alert_backlog_seconds=300)


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        (healthy(), []),
        (with_(beat={"late": True, "age_seconds": 75.0}), ["beat late: last tick 75s ago"]),
        (with_(beat={"last_tick_at": None, "age_seconds": None, "late": True}), ["beat: no tick"]),
        (with_(workers={"count": 0, "answered": []}), ["no worker answered a ping"]),
        (
            with_(workers={"ok": False, "error": "TimeoutError", "count": 0, "answered": []}),
            ["no worker answered a ping (TimeoutError)"],
        ),
        # the ping was skipped on purpose: not a failure
        (with_(workers={"ok": None, "error": "not asked", "count": None, "answered": []}), []),
        (with_(alerts={"oldest_backlog_age_seconds": 301.0}), ["alert backlog"]),
        (with_(alerts={"oldest_backlog_age_seconds": 300.0}), []),
        (with_(alerts={"oldest_backlog_age_seconds": None}), []),
        (
            with_(
                broker={"ok": False, "error": "ConnectionError: refused"},
                workers={"ok": False, "error": "broker unreachable", "count": 0, "answered": []},
            ),
            ["broker unreachable: ConnectionError", "no worker answered"],
        ),
        # a dead database leaves beat and alerts unknown (null) and says so once
        (
            with_(database={"ok": False, "error": "OperationalError: gone"}, beat=None, alerts=None),
            ["database unreachable: OperationalError"],
        ),
        # a broker kind without queue inspection (ok null) is not a failure by itself
        (with_(broker={"ok": None, "error": "not implemented"}), []),
        (
            with_(
                beat={"late": True, "age_seconds": 90.0},
                workers={"count": 0, "answered": []},
                alerts={"oldest_backlog_age_seconds": 900.0},
            ),
            ["beat late", "no worker answered", "alert backlog"],
        ),
    ],
)
def test_check_status(report: dict[str, Any], expected: list[str], settings: Settings) -> None:
    reasons = check_status(report, settings)
    assert len(reasons) == len(expected), reasons
    for reason, start in zip(reasons, expected, strict=True):
        assert start in reason
