"""``benchmarks/farm.py`` counts the items each ``new`` feed offered the service, apart from what
the baselines were served: the scale-out's check of articles lost or stored twice compares the
stored articles with it (``run.duplicates``, round 52)."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest
from support.bench import bench_module

from feedwatch.settings import Settings

farm = bench_module("farm")
run = bench_module("run")


def test_a_hit_offers_the_items_the_service_has_not_been_offered() -> None:
    group = farm.Group("poll", 1, {"new": 1.0}, items=50, new_items=2)
    group.offer(0, 0)
    assert group.offered[0] == 50  # items 0 … 49
    group.offer(0, 1)
    assert group.offered[0] == 52  # 2 … 51: two new
    group.offer(0, 6)  # hits 2 … 5 went to a baseline: 12 … 61, ten the service has not had
    assert group.offered[0] == 62
    group.offer(0, 60)  # 118 … 167: the window moved past everything offered before
    assert group.offered[0] == 112


def test_the_farm_knows_the_service_by_its_default_user_agent() -> None:
    """A User-Agent renamed in the settings, and not in the farm, would count nothing offered:
    every article stored would read as one stored twice."""
    assert Settings().user_agent.startswith(farm.SERVICE_AGENT)


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_the_farm_counts_the_items_its_answers_to_the_service_held(tmp_path: Path) -> None:
    """Requests as the service sends them and as a baseline does, interleaved: the count the
    farm reports is the number of distinct items in the bodies the service's requests got."""
    config = {"groups": {"poll": {"feeds": 2, "mix": {"new": 1.0}, "items": 10, "new_items": 3}}}
    agents = ["feedwatch/0.1", "Python/3.11 aiohttp", "feedwatch/0.1"] + ["Python/3.11 aiohttp"] * 4
    agents += ["feedwatch/0.1"] * 2
    with run.farm_process(config, tmp_path) as (port, _):
        guids: set[str] = set()
        for agent in agents:
            request = urllib.request.Request(run.farm_url(port, "poll", 1, 1), headers={"User-Agent": agent})
            with urllib.request.urlopen(request, timeout=10) as response:
                body = response.read().decode()
            if agent.startswith(farm.SERVICE_AGENT):
                guids.update(re.findall(r"<guid[^>]*>([^<]+)</guid>", body))
        stats = run.farm_stats(port, detail=True)["poll"]
    # hits 0, 2, 7 and 8 to the service: items 0 … 9, 6 … 15, 21 … 30 and 24 … 33
    assert len(guids) == 16 + 13
    assert stats["offered"] == [0, len(guids)] and stats["per_feed"] == [0, len(agents)]
