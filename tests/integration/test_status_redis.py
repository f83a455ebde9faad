"""Status against a real Redis broker (db 13), a real Celery worker and a real metrics server.

Skips when Redis is not reachable locally; fails instead when ``CI`` is set. Every process a
test starts is stopped by its pid.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from support.settings import migrated_settings

from feedwatch import db, ops
from feedwatch.models import Feed, FeedState, Heartbeat
from feedwatch.settings import Settings
from feedwatch.status import collect_status, queue_status, worker_status
from feedwatch.timeutil import utcnow

pytestmark = [pytest.mark.integration, pytest.mark.services]

REDIS_URL = "redis://127.0.0.1:6379/13"
REPO = Path(__file__).resolve().parents[2]
PYTHON = Path(sys.executable)


def _service_missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: integration services must be up)")
    pytest.skip(reason)


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        _service_missing(f"Redis not reachable at {REDIS_URL}: {exc}")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def settings(tmp_path: Path, redis_db: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    database = f"sqlite:///{tmp_path / 'feedwatch.db'}"
    with migrated_settings(monkeypatch, tmp_path, BROKER_URL=REDIS_URL, DATABASE_URL=database) as s:
        yield s


def _child_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDWATCH_")}
    env.update(
        FEEDWATCH_HOME=str(settings.home),
        FEEDWATCH_BROKER_URL=settings.broker_url,
        FEEDWATCH_DATABASE_URL=settings.database_url,
        FEEDWATCH_LOG_FORMAT="json",
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _wait_for(what: str, probe: Callable[[], Any], seconds: float = 60.0) -> Any:
    """Poll ``probe`` until it returns something truthy (a bounded wait, not a timing check)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.3)
    pytest.fail(f"gave up waiting for {what}")


def _run(*args: str) -> Any:
    import click

    @click.group()
    def main() -> None:
        pass

    for command in ops.COMMANDS:
        main.add_command(command)
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_queue_depths_without_worker(settings: Settings) -> None:
    from workers.app import create_app

    app = create_app(settings)
    for _ in range(3):
        app.send_task("feedwatch.poll_feed", args=[[1]], queue="feeds")
    app.send_task("feedwatch.poll_feed", args=[[2]], queue="feeds", priority=5)  # feeds\x06\x163
    for alert_id in (1, 2):
        app.send_task("feedwatch.deliver_alert", args=[alert_id], queue="alerts")

    found = queue_status(settings)
    assert found["broker"]["ok"] is True and found["broker"]["kind"] == "redis"
    q = found["queues"]
    assert (q["feeds"]["ready"], q["alerts"]["ready"], q["default"]["ready"]) == (4, 2, 0)
    assert (q["feeds"]["unacked"], q["alerts"]["unacked"]) == (0, 0)

    # A consumer takes one alert message without acking it: it moves to kombu's unacked hash.
    with app.connection_for_read() as conn:
        message = conn.default_channel.basic_get("alerts", no_ack=False)
        assert message is not None
        q = queue_status(settings)["queues"]
        assert (q["alerts"]["ready"], q["alerts"]["unacked"]) == (1, 1)
        assert q["alerts"]["oldest_unacked_age_seconds"] is not None
        assert q["feeds"]["unacked"] == 0
        message.ack()
    assert queue_status(settings)["queues"]["alerts"]["unacked"] == 0

    report = json.loads(_run("status", "--json", "--ping-timeout", "0.5").output)
    assert report["queues"]["feeds"]["ready"] == 4
    assert report["workers"]["count"] == 0


def test_check_fails_without_heartbeat_and_worker(settings: Settings) -> None:
    result = _run("status", "--check", "--ping-timeout", "0.5")
    assert result.exit_code == 1
    assert "beat: no tick recorded" in result.output
    assert "no worker answered" in result.output


def test_failing_feed_listed_with_its_class(settings: Settings) -> None:
    with db.session_scope(settings) as s:
        s.add(
            Feed(
                config_url="http://127.0.0.1:1/feed.xml",
                url="http://127.0.0.1:1/feed.xml",
                name="refusing",
                state=FeedState.FAILING,
                error_count=4,
                error_class="connect",
                error_message="connection refused",
                last_error_at=utcnow(),
            )
        )
    report = json.loads(_run("status", "--json", "--ping-timeout", "0").output)
    assert report["feeds"]["by_state"]["failing"] == 1
    worst = report["feeds"]["worst"]
    assert [(w["name"], w["error_class"]) for w in worst] == [("refusing", "connect")]
    errors = json.loads(_run("feeds", "errors", "--json").output)
    assert errors[0]["error_class"] == "connect"


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [
            str(PYTHON.parent / "celery"),
            "-A",
            "workers.app",
            "worker",
            "-Q",
            "feeds,alerts,default",
            "-c",
            "1",
            "--without-mingle",
            "--without-gossip",
            "-n",
            f"status-test-{os.getpid()}@localhost",
        ],
        cwd=REPO,
        env=_child_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        _stop(proc)
        log.close()


def test_worker_answers_and_is_listed(settings: Settings, worker: subprocess.Popen[bytes]) -> None:
    from workers.app import create_app

    app = create_app(settings)

    def answered() -> list[dict[str, Any]]:
        assert worker.poll() is None, (settings.home / "worker.log").read_text()
        return worker_status(app, 1.0)["answered"]

    workers = _wait_for("the worker to answer a ping", answered)
    assert len(workers) == 1
    assert workers[0]["name"] == f"status-test-{os.getpid()}@localhost"
    # Started with `-Q feeds,alerts,default`: a feeds worker consumes the upkeep's queue unasked.
    assert workers[0]["queues"] == ["alerts", "default", "feeds", "upkeep"]

    with db.session_scope(settings) as s:
        s.add(Heartbeat(name="beat", at=utcnow()))
    report = collect_status(settings, ping_timeout=1.0)
    assert report["workers"]["count"] == 1
    result = _run("status", "--check", "--ping-timeout", "2")
    assert result.exit_code == 0, result.output
    assert "healthy" in result.output


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # loopback only
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def metrics_server(settings: Settings, tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    log = (tmp_path / "metrics.log").open("wb")
    code = "import sys; from feedwatch.ops import serve_metrics; serve_metrics.main(sys.argv[1:])"
    proc = subprocess.Popen(
        [str(PYTHON), "-c", code, "--host", "127.0.0.1", "--port", str(port), "--ping-timeout", "0.5"],
        cwd=REPO,
        env=_child_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, (tmp_path / "metrics.log").read_text()
        try:
            return _get(f"{base}/healthz")[0] == 200
        except OSError:
            return False

    try:
        _wait_for("the metrics server", up)
        yield base
    finally:
        _stop(proc)
        log.close()


def test_metrics_server(settings: Settings, metrics_server: str) -> None:
    from workers.app import create_app

    app = create_app(settings)
    for _ in range(2):
        app.send_task("feedwatch.poll_feed", args=[[1]], queue="feeds")

    status, body = _get(f"{metrics_server}/readyz")
    assert status == 503
    assert any("beat" in r for r in json.loads(body)["reasons"])

    status, body = _get(f"{metrics_server}/metrics")
    assert status == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    assert samples[("feedwatch_queue_messages", (("queue", "feeds"), ("state", "ready")))] == 2
    assert samples[("feedwatch_queue_messages", (("queue", "alerts"), ("state", "unacked")))] == 0
    assert samples[("feedwatch_up", (("component", "broker"),))] == 1
    assert samples[("feedwatch_up", (("component", "database"),))] == 1
    assert samples[("feedwatch_workers", ())] == 0
    assert samples[("feedwatch_beat_late", ())] == 1
    assert samples[("feedwatch_alerts", (("status", "pending"),))] == 0
    assert ("feedwatch_feeds", (("state", "ok"),)) in samples

    with db.session_scope(settings) as s:
        s.add(Heartbeat(name="beat", at=utcnow()))
    status, body = _get(f"{metrics_server}/readyz")
    assert status == 200 and json.loads(body) == {"ready": True, "reasons": []}
    assert _get(f"{metrics_server}/nothing")[0] == 404
