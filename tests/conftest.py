"""Suite-wide: the tests that start services run one at a time, the rest alongside them.

``scripts/test`` runs the suite on two pytest-xdist workers (``-n 2``). A test marked ``faults``,
``e2e`` or ``services`` starts feedwatch or Celery processes, or flushes one of the machine's
Redis databases (a fixed number per module, one shared by the fault modules). All of them are
one unit of work for the scheduler below: one worker runs them one after another, as a serial
run would, so no two of them share a Redis database or compete for the cores with each other;
the other worker runs the rest meanwhile: the in-process tests, and those that start only
loopback servers of their own (a farm, a feed server; the benchmark scripts' tests: ~65 s of
tests out of that queue, the suite ~30 s shorter, round 53). Without ``-n`` the suite runs
serially.

The unit is chosen by path (``SERVICES``): xdist's scheduler sees test ids only, not markers,
and its own ``xdist_group`` mark does nothing under pytest 9 (xdist 3.8 renames ``_nodeid``,
which pytest 9 no longer reads). The collection check below keeps the markers and the paths in
step: a test marked as starting services outside ``SERVICES``, or one inside it not so marked,
stops the run before any test starts.
"""

from __future__ import annotations

from typing import Any

import pytest

#: The markers of tests that start processes or hold a fixed Redis database.
SERVICE_MARKERS = ("faults", "e2e", "services")
#: Where those tests are, by test id prefix (relative to the repository).
SERVICES = (
    "tests/faults/",
    "tests/integration/test_alert_delivery.py",
    "tests/integration/test_benchmark_smoke.py",
    "tests/integration/test_e2e.py",
    "tests/integration/test_full_text.py",
    "tests/integration/test_ingest_cli.py",
    "tests/integration/test_scale_out.py",
    "tests/integration/test_status_redis.py",
)


def starts_services(nodeid: str) -> bool:
    return nodeid.startswith(SERVICES)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    astray = [
        item.nodeid
        for item in items
        if any(item.get_closest_marker(name) for name in SERVICE_MARKERS) != starts_services(item.nodeid)
    ]
    if astray:
        raise pytest.UsageError(
            "tests/conftest.py: these tests' markers (faults, e2e, services) and SERVICES disagree; "
            "mark a test that starts processes or flushes a fixed Redis database, and list its "
            "module in SERVICES:\n  " + "\n  ".join(astray[:20])
        )


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Every ``SERVICES`` test in one unit of work; every other test a unit of its own. Only
    for ``-n``'s default distribution (``load``): another ``--dist`` is xdist's own."""
    if config.getoption("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ServicesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "services" if starts_services(nodeid) else nodeid

    return ServicesTogether(config, log)
