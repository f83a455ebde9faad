"""The worker refuses a configuration under which Redis would redeliver a running task."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.feeds import write_feeds_toml
from support.stack import Stack

pytestmark = [pytest.mark.faults]


def test_visibility_timeout_below_the_hard_limit_refuses_to_start(tmp_path: Path) -> None:
    feeds = write_feeds_toml(tmp_path / "feeds.toml", ["http://127.0.0.1:9/none.xml"])
    stack = Stack(
        tmp_path,
        feeds,
        None,
        FEEDWATCH_BROKER_URL="redis://127.0.0.1:9/0",  # never reached: the check comes first
        FEEDWATCH_VISIBILITY_TIMEOUT="100",
    )
    proc = stack.worker("-c", "1")
    try:
        assert proc.proc.wait(60) != 0
    finally:
        stack.stop()
    assert "FEEDWATCH_VISIBILITY_TIMEOUT=100s must exceed" in proc.output()
