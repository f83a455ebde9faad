"""``benchmarks/parse_bench.py`` runs and prints its documented shape (it once went seven rounds
broken unnoticed: nothing ran it). Shape and coverage only; the figures are the benchmark's job."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support.services import REPO, SHARED

pytestmark = [pytest.mark.corpus, pytest.mark.timeout(120)]


def test_parse_bench_json_shape() -> None:
    if not (SHARED / "corpus" / "feeds").is_dir():
        pytest.skip("no ../shared corpus (a fresh clone without it)")
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "parse_bench.py"), "--repeat", "1", "--min-time", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout)
    feeds = result["per_feed"]
    assert len(feeds) == result["all"]["feeds"] >= 26
    assert result["fast_path_feeds"] == sum(f["fast_path"] for f in feeds) >= 25  # as test_fastparse's floor
    for part in ("all", "on_fast_path", "declined"):
        assert {"feeds", "ms", "feedparser_ms", "ratio", "known_ms"} <= result[part].keys()
    assert all(f["ms"] > 0 and f["feedparser_ms"] > 0 and f["known_ms"] > 0 for f in feeds)
