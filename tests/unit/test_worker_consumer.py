"""The worker's consumer (``worker_consumer``) leaves out mingle and gossip, the steps with which
Celery can reconnect to Redis after an outage, say it is ready, and take no task
(workers/consumer.py); heartbeats stay for Flower. Built on a Redis broker URL, where Celery's
own consumer runs both: nothing connects, the blueprint is only assembled."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from unittest.mock import Mock

from celery import Celery
from celery.utils.imports import symbol_by_name
from celery.worker.consumer import Consumer as CeleryConsumer

from feedwatch.settings import Settings
from workers.app import create_app

STEPS = "celery.worker.consumer.{}"


def _app(tmp_path: Path) -> Celery:
    return create_app(Settings(broker_url="redis://127.0.0.1:6379/15", home=tmp_path))


def _enabled(consumer_cls: type, tmp_path: Path) -> dict[str, bool]:
    app = _app(tmp_path)
    consumer = consumer_cls(
        lambda *a: None, app=app, hostname="t@h", pool=Mock(), timer=Mock(), controller=Mock()
    )
    steps = consumer.blueprint.steps
    names = {
        "mingle": "mingle.Mingle",
        "gossip": "gossip.Gossip",
        "heart": "heart.Heart",
        "tasks": "tasks.Tasks",
    }
    return {key: bool(steps[STEPS.format(name)].enabled) for key, name in names.items()}


def test_the_configured_consumer_runs_without_mingle_and_gossip(tmp_path: Path) -> None:
    configured = symbol_by_name(_app(tmp_path).conf.worker_consumer)
    assert _enabled(configured, tmp_path) == {"mingle": False, "gossip": False, "heart": True, "tasks": True}


def test_celerys_own_consumer_would_run_both_here(tmp_path: Path) -> None:
    """The check above means something: on this app and broker, Celery's consumer runs them."""
    assert _enabled(CeleryConsumer, tmp_path) == {
        "mingle": True,
        "gossip": True,
        "heart": True,
        "tasks": True,
    }


def test_a_cli_import_of_the_app_does_not_load_celerys_consumer() -> None:
    """The consumer is named, not imported, by workers.app: only a worker pays for the import."""
    code = "import sys, workers.app; print('celery.worker.consumer' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
