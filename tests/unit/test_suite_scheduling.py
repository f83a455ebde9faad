"""tests/conftest.py's two promises, checked on a small suite of its own run by pytest-xdist:
every test that starts services runs on one worker, one after another, while the in-process
tests run on the other; and a test whose marker and path disagree stops the run before any test.

The small suite is a copy of the real conftest over generated modules at the same paths, run in
a child pytest (``pytester.runpytest_subprocess``) with two workers, as ``scripts/test`` runs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

pytest_plugins = ("pytester",)

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

INI = """
[pytest]
addopts = -p no:cacheprovider -p no:randomly --strict-markers
markers =
    faults: x
    e2e: x
    services: x
"""

#: Each test records which worker ran it and when it started and ended.
RECORD = """
import json, os, time
from pathlib import Path

import pytest


def record(name):
    start = time.monotonic()
    time.sleep(0.05)
    line = json.dumps([name, os.environ.get("PYTEST_XDIST_WORKER"), start, time.monotonic()])
    with open(os.environ["SCHED_LOG"], "a") as fh:
        fh.write(line + "\\n")
"""


def _module(marker: str | None, names: list[str]) -> str:
    mark = f"pytestmark = pytest.mark.{marker}\n" if marker else ""
    tests = "".join(f"\ndef test_{n}():\n    record({n!r})\n" for n in names)
    return RECORD + mark + tests


def _suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The small suite in pytester's directory; the file its tests record themselves in.
    (This suite's own xdist worker, if any, must not show through to the child's.)"""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_ADDOPTS"):
        monkeypatch.delenv(name, raising=False)
    log = pytester.path / "sched.log"
    monkeypatch.setenv("SCHED_LOG", str(log))
    pytester.makefile(".ini", pytest=INI)
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "conftest.py").write_text(CONFTEST.read_text())
    files = {
        "tests/faults/test_kill.py": _module("faults", [f"fault{i}" for i in range(4)]),
        "tests/integration/test_e2e.py": _module("e2e", [f"e2e{i}" for i in range(4)]),
        "tests/unit/test_plain.py": _module(None, [f"plain{i}" for i in range(8)]),
    }
    for name, text in files.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return log


def test_service_tests_share_one_worker_one_at_a_time(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _suite(pytester, monkeypatch)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "xdist", "tests")
    result.assert_outcomes(passed=16)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    services = [r for r in rows if not r[0].startswith("plain")]
    plain = [r for r in rows if r[0].startswith("plain")]
    assert len(services) == 8 and len(plain) == 8
    # One worker ran all eight, and no two of them overlapped in time.
    assert len({r[1] for r in services}) == 1, services
    spans = sorted((r[2], r[3]) for r in services)
    assert all(end <= nxt for (_, end), (nxt, _) in itertools.pairwise(spans))
    # The other worker was not idle: the in-process tests went to it (xdist's load scheduler
    # gives a worker new units while the other is busy with the services unit).
    assert {r[1] for r in plain} - {services[0][1]}, rows


def test_another_dist_is_xdists_own(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--dist each`` is not replaced by the services scheduler: every worker runs every test."""
    _suite(pytester, monkeypatch)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "xdist", "--dist", "each", "tests")
    result.assert_outcomes(passed=32)


@pytest.mark.parametrize(
    ("path", "marker"),
    [
        ("tests/unit/test_stray.py", "services"),  # marked, not listed
        ("tests/faults/test_unmarked.py", None),  # listed, not marked
    ],
    ids=["marked-outside-SERVICES", "unmarked-inside-SERVICES"],
)
def test_markers_and_paths_disagreeing_stop_the_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, path: str, marker: str | None
) -> None:
    log = _suite(pytester, monkeypatch)
    stray = pytester.path / path
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_text(_module(marker, ["stray"]))
    result = pytester.runpytest_subprocess("-p", "xdist", "-n", "0", "tests")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*markers (faults, e2e, services) and SERVICES disagree*", f"*{path}::test_stray*"]
    )
    assert not log.exists()  # no test ran
