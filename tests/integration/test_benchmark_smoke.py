"""The benchmark runs end to end on tiny sizes and prints one JSON object of the documented shape.

Shape only: tests never assert timings (the figures are the benchmark's job, docs/performance.md).
It starts the real service (Celery workers + beat on Redis db 7 and a fresh PostgreSQL database,
then the embedded SQLite + filesystem-broker service), so it needs both servers.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support.services import REPO, missing, port_open

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(300)]

TINY = ["--feeds", "60", "--ingest-feeds", "6", "--probes", "4", "--sqlite-feeds", "30",
        "--rate", "60", "--window", "2", "--hosts", "3"]  # fmt: skip


def test_quick_json_shape() -> None:
    if not port_open("127.0.0.1", 6379):
        missing("Redis not reachable at 127.0.0.1:6379")
    if not port_open("127.0.0.1", 5432):
        missing("PostgreSQL not reachable at 127.0.0.1:5432")
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--json", *TINY],
        cwd=REPO, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout)
    for key in ("feeds_per_s", "floor_feeds_per_s", "ratio", "all_feeds_polled"):
        assert key in result["poll"], key
    for key in ("items_per_s", "parse_only_items_per_s", "ratio"):
        assert key in result["ingest"], key
    assert isinstance(result["unchanged_cost_ratio"], float)
    assert result["unchanged"]["parse_skipped"] is True  # a re-poll of the same bytes never parses
    for key in ("p50_s", "p95_s", "probes", "delivered"):
        assert key in result["latency"], key
    assert result["memory"]["peak_rss_mb_max"] > 0
    assert "feeds_per_s" in result["sqlite"]
    assert all(isinstance(v, bool) for v in result["targets"].values())
    assert result["sizes"]["feeds"] == 60
    assert result["sizes"]["hosts"] == 3  # feeds on 127.0.0.1 … .3: the warm-up waited for all
