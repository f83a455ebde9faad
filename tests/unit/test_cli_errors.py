"""Errors a user can fix come out as one plain line and exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from feedwatch.cli import main
from feedwatch.settings import reset_settings


@pytest.mark.parametrize(
    ("env", "args", "expected"),
    [
        ({"FEEDWATCH_TICK_SECONDS": "-1"}, ["feeds", "list"], "FEEDWATCH_TICK_SECONDS"),
        ({"FEEDWATCH_LOG_FORMAT": "xml"}, ["alerts", "list"], "FEEDWATCH_LOG_FORMAT"),
        ({}, ["feeds", "list"], "feedwatch db upgrade"),  # a home nobody has migrated
    ],
)
def test_user_errors_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], args: list[str], expected: str
) -> None:
    monkeypatch.setenv("FEEDWATCH_HOME", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    try:
        result = CliRunner().invoke(main, args)
    finally:
        reset_settings()
    assert result.exit_code == 2, result.output
    assert expected in result.output.replace("\n", " ")
    assert "Traceback" not in result.output
