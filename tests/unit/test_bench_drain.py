"""``benchmarks/run.py``'s accounting of the work an ingest window leaves behind: the alerts
worker's full texts and deliveries that are still queued when the window closes are done after
it, and the all-in rate charges the window with its own share of them."""

from __future__ import annotations

from typing import Any

import pytest
from support.bench import bench_module

run = bench_module("run")


def _phase(start: dict[str, int], end: dict[str, int]) -> dict[str, Any]:
    return {
        "items_per_s": 3000.0,
        "window_s": 3.0,
        # the farm and the rest of the machine are not the service's work
        "cores_used": {
            "feeds": 1.2,
            "alerts_worker": 0.4,
            "postgres": 0.3,
            "farm": 0.1,
            "rest_of_machine": 0.05,
        },
        "left_at_window_start": start,
        "left_at_window_end": end,
    }


def _drain(**cpu_s: float) -> dict[str, Any]:
    return {"cores": 0.04, "s": 15.0, "cpu_s": cpu_s}


def test_nothing_left_behind_leaves_the_rate_as_it_is() -> None:
    phase = _phase({"full_texts": 0, "alerts": 0}, {"full_texts": 0, "alerts": 0})
    run.with_drain(phase, _drain(alerts_worker=0.01, feeds=0.3, postgres=0.02))
    assert phase["deferred_cpu_s"] == 0.0
    assert phase["items_per_s_all_in"] == 3000.0


def test_the_window_pays_for_its_share_of_the_backlog() -> None:
    # 1,000 full texts were waiting when the window opened, 3,000 when it closed: two thirds of
    # the drain's work is the window's. The feeds worker's drain CPU is its last batches, whose
    # items the window does not count.
    phase = _phase({"full_texts": 1000, "alerts": 0}, {"full_texts": 2900, "alerts": 100})
    run.with_drain(phase, _drain(alerts_worker=9.0, postgres=3.0, feeds=0.5))
    assert phase["deferred_cpu_s"] == pytest.approx(8.0)
    window_cpu = (1.2 + 0.4 + 0.3) * 3.0
    assert phase["items_per_s_all_in"] == round(3000.0 * window_cpu / (window_cpu + 8.0), 1)
    assert phase["drain"]["s"] == 15.0


def test_a_backlog_that_shrank_owes_nothing_to_the_window() -> None:
    phase = _phase({"full_texts": 500, "alerts": 0}, {"full_texts": 200, "alerts": 0})
    run.with_drain(phase, _drain(alerts_worker=2.0, postgres=0.5))
    assert phase["deferred_cpu_s"] == 0.0
    assert phase["items_per_s_all_in"] == 3000.0
