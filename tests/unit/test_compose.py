"""docker-compose.yml, checked without a Docker engine: services, queues, settings names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from support.bench import bench_module

from feedwatch.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
FEEDWATCH_SERVICES = ("migrate", "beat", "worker-feeds", "worker-alerts", "worker-articles", "metrics")
EXPECTED = ("redis", "postgres", "flower", *FEEDWATCH_SERVICES)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command", [])
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def option(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def env_names(service: dict[str, Any]) -> set[str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return {item.split("=", 1)[0] for item in env}
    return set(env)


@pytest.mark.parametrize("name", EXPECTED)
def test_service_exists(services: dict[str, dict[str, Any]], name: str) -> None:
    assert name in services


def test_exactly_one_beat(services: dict[str, dict[str, Any]]) -> None:
    beats = [n for n, s in services.items() if "beat" in command(s)]
    assert beats == ["beat"]
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1
    assert command(services["beat"])[:4] == ["celery", "-A", "workers.app", "beat"]


@pytest.mark.parametrize("name", FEEDWATCH_SERVICES)
def test_feedwatch_services_share_the_anchor(services: dict[str, dict[str, Any]], name: str) -> None:
    service = services[name]
    assert service["build"] == "."
    env = service["environment"]
    assert env["FEEDWATCH_BROKER_URL"] == "redis://redis:6379/0"
    assert env["FEEDWATCH_DATABASE_URL"] == (
        "postgresql+psycopg://feedwatch:feedwatch@postgres:5432/feedwatch"
    )
    assert env["FEEDWATCH_HOME"] == "/data"
    targets = {v.split(":")[1] for v in service["volumes"]}
    assert {"/data", "/app/config"} <= targets
    assert "./config:/app/config:ro" in service["volumes"]


def test_every_feedwatch_env_name_is_a_setting(services: dict[str, dict[str, Any]]) -> None:
    fields = {f"FEEDWATCH_{name.upper()}" for name in Settings.model_fields}
    used = set().union(*(env_names(s) for s in services.values()))
    feedwatch_names = {n for n in used if n.startswith("FEEDWATCH_")}
    assert feedwatch_names, "no FEEDWATCH_* settings in compose"
    assert feedwatch_names <= fields, sorted(feedwatch_names - fields)
    names = [frozenset(env_names(services[n])) for n in FEEDWATCH_SERVICES]
    assert len(set(names)) == 1, "feedwatch services disagree on their environment"


def test_worker_queues_cover_every_queue(services: dict[str, dict[str, Any]]) -> None:
    from feedwatch.settings import QUEUES
    from workers.app import consumed_queues

    queues: set[str] = set()
    for service in services.values():
        cmd = command(service)
        if "worker" in cmd:
            queues |= set(consumed_queues(option(cmd, "-Q").split(",")))

    assert set(QUEUES) <= queues
    assert option(command(services["worker-articles"]), "-Q") == "articles"
    # Both consume `default` (the ticks): a slow channel holding every alerts process must not
    # stop the ticks (tests/faults/test_slow_channel.py).
    assert set(option(command(services["worker-feeds"]), "-Q").split(",")) == {"feeds", "default"}
    # One more process than the two cores it is sized for (benchmarks/run.py measures this shape).
    assert option(command(services["worker-feeds"]), "--concurrency") == "3"
    assert set(option(command(services["worker-alerts"]), "-Q").split(",")) == {
        "alerts",
        "default",
    }


def test_the_database_upkeep_runs_on_the_feeds_workers_never_on_the_alerts_workers(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Its VACUUM holds a process for seconds: on an alerts process it held every delivery that
    long (round 60 in docs/performance-history.md), so no alerts worker consumes its queue, and
    the feeds workers do. Its queue is not the poll batches' (round 61: there it waited behind
    their whole backlog), and a feeds worker takes it without naming it in ``-Q``."""
    from workers.app import consumed_queues, create_app

    app = create_app(Settings(home=tmp_path))
    queue = app.conf.task_routes["feedwatch.db_upkeep"]["queue"]
    assert app.conf.beat_schedule["db-upkeep"]["options"]["queue"] == queue
    assert queue != app.conf.task_routes["feedwatch.poll_feed"]["queue"]

    def consumes(queues: str) -> bool:
        return queue in consumed_queues(queues.split(","))

    assert consumes(option(command(services["worker-feeds"]), "-Q"))
    assert not consumes(option(command(services["worker-alerts"]), "-Q"))
    assert not consumes(option(command(services["worker-articles"]), "-Q"))
    run = bench_module("run")
    queues = {name: q for name, q, _ in run.Service.WORKERS}
    assert consumes(queues["feeds"]) and not consumes(queues["other"])  # the benchmark's shape too


def test_a_feeds_worker_takes_the_upkeep_however_it_was_started() -> None:
    """``-Q`` as given, in its order, then the queues that follow one given; nothing twice."""
    from workers.app import consumed_queues

    assert consumed_queues(["feeds", "default"]) == ["feeds", "default", "upkeep"]
    assert consumed_queues(["upkeep", "feeds"]) == ["upkeep", "feeds"]
    assert consumed_queues(["alerts", "default", "alerts"]) == ["alerts", "default"]
    assert consumed_queues(["articles"]) == ["articles"]


def test_the_benchmark_measures_the_compose_workers(services: dict[str, dict[str, Any]]) -> None:
    """benchmarks/run.py starts the deployment's feeds worker: the same number of processes."""
    run = bench_module("run")
    processes = option(command(services["worker-feeds"]), "--concurrency")
    assert processes == str(run.FULL.concurrency) == str(run.QUICK.concurrency)


def test_migrate_runs_once_and_gates_the_others(services: dict[str, dict[str, Any]]) -> None:
    migrate = services["migrate"]
    assert command(migrate) == ["feedwatch", "db", "upgrade"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "migrate" not in migrate["depends_on"]
    assert str(migrate.get("restart", "no")) == "no"
    for name in FEEDWATCH_SERVICES:
        if name != "migrate":
            gate = services[name]["depends_on"]["migrate"]
            assert gate["condition"] == "service_completed_successfully", name


def test_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    for name in ("worker-feeds", "worker-alerts", "worker-articles"):
        assert services[name]["healthcheck"]["test"][1:] == ["feedwatch", "status", "--check"]


def test_images_and_ports(services: dict[str, dict[str, Any]]) -> None:
    assert services["redis"]["image"] == "redis:7"
    assert services["postgres"]["image"] == "postgres:16"
    assert services["flower"]["image"].startswith("mher/flower")
    assert command(services["flower"]) == ["celery", "--broker=redis://redis:6379/0", "flower"]
    assert "5555:5555" in services["flower"]["ports"]
    assert command(services["metrics"]) == ["feedwatch", "serve-metrics"]
    assert "9808:9808" in services["metrics"]["ports"]


def test_postgres_checkpoints_as_operations_md_advises(services: dict[str, dict[str, Any]]) -> None:
    """The server's one setting, and the figure operations.md gives for it (round 66)."""
    assert command(services["postgres"]) == ["postgres", "-c", "max_wal_size=8GB"]
    advice = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert "max_wal_size = 8GB" in advice and "docker-compose.yml sets it" in advice


def test_dockerfile_basics() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert "WORKDIR /app" in text and "pip install ." in text
    assert "\nUSER " in text and "USER root" not in text


def test_settings_example_lists_every_setting_with_its_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = ROOT / "config" / "settings.example.env"
    text = path.read_text(encoding="utf-8")
    listed = {
        line.lstrip("# ").split("=", 1)[0]
        for line in text.splitlines()
        if line.lstrip("# ").startswith("FEEDWATCH_") and "=" in line
    }
    assert listed == {f"FEEDWATCH_{n.upper()}" for n in Settings.model_fields}
    for name in listed:
        monkeypatch.delenv(name, raising=False)
    from_file = Settings(_env_file=path)  # type: ignore[call-arg]
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert from_file.model_dump(exclude={"feeds_file", "rules_file"}) == defaults.model_dump(
        exclude={"feeds_file", "rules_file"}
    )
