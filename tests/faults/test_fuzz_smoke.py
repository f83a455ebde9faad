"""A short run of benchmarks/fuzz_parse.py: mutated feeds never crash parse → normalize.

The mutation engine (seeded, no extra dependency) for about three seconds; the coverage-guided
atheris engine is for longer runs by hand (figures in docs/reliability.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]


def test_three_seconds_of_mutations_find_no_crash(tmp_path: Path) -> None:
    cmd = [sys.executable, str(REPO / "benchmarks" / "fuzz_parse.py"), "--engine", "mutation"]
    cmd += ["--seconds", "3", "--seed", "5", "--crash-dir", str(tmp_path / "crashes")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=100, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\nfuzz smoke: {figures}")
    assert figures["iterations"] > 0
    crashes = sorted(p.read_text() for p in (tmp_path / "crashes").glob("*.txt"))
    assert figures["crashes"] == 0, crashes[:3]
