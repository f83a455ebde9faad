"""``benchmarks/farm.py`` renders its feeds' constant bodies before it says READY: a capacity
window must not pay for a body the bare loop never asked for (round 51)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.bench import bench_module

farm = bench_module("farm")
run = bench_module("run")


def test_every_constant_feed_is_rendered_before_the_first_request() -> None:
    group = farm.Group("poll", 40, {"304": 0.5, "unchanged": 0.2, "slow": 0.1, "new": 0.1, "error": 0.1})
    f = farm.Farm([group])
    f.port = 8080
    f.render_constant_bodies()
    constant = {i for i, kind in enumerate(group.kinds) if kind in farm.CONSTANT_KINDS}
    assert constant and set(group.bodies) == constant
    # The bytes a request gets, and the bytes the runner hashes when it seeds a feed's row.
    assert all(group.bodies[i] == farm.constant_body(group, i, 8080) for i in constant)


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_the_farm_process_has_rendered_them_when_it_says_ready(tmp_path: Path) -> None:
    """The farm as ``run.py`` starts it (a child stopped by its pid): its stats, asked before any
    feed is, count every constant body rendered already."""
    mix = {"304": 0.5, "unchanged": 0.2, "slow": 0.1, "new": 0.1, "error": 0.1}
    config = {"groups": {"poll": {"feeds": 60, "mix": mix}}}
    constant = sum(kind in farm.CONSTANT_KINDS for kind in farm.assign_kinds(60, mix))
    with run.farm_process(config, tmp_path) as (port, _):
        stats = run.farm_stats(port)["poll"]
    assert constant == 48 and stats["bodies"] == constant and stats["hits"] == 0
