"""A feedwatch deployment in miniature for fault tests: worker(s), beat(s), a database to read.

``Stack`` starts real processes (``feedwatch run``, ``celery beat``), each in its own process
group, stops every one by pid, and reads the outcome straight from the database and the JSONL
channel's file.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlmodel import Session, create_engine, select

from feedwatch.models import Alert, Article, Delivery, Feed
from support.faults import jsonl
from support.services import ServiceProcess, feedwatch_cmd, service_env, wait_for

#: Short leases and re-queue delays, so recovery that takes minutes in production takes seconds.
#: The claim lease must exceed the hard time limit (refused at start otherwise), so the time
#: limits shrink with it; a cold worker's first poll (a few seconds) still fits the soft limit.
FAST_RECOVERY = {
    "FEEDWATCH_TASK_SOFT_TIME_LIMIT": "6",
    "FEEDWATCH_TASK_HARD_TIME_LIMIT": "8",
    "FEEDWATCH_CLAIM_LEASE_SECONDS": "10",
    "FEEDWATCH_ALERT_REQUEUE_SECONDS": "2",
    "FEEDWATCH_DELIVERY_LEASE_SECONDS": "3",
    "FEEDWATCH_TICK_SECONDS": "1",
}

#: Time limits and leases longer than anything a test holds on purpose (a hanging channel, a
#: parked fetch): nothing gives up or is claimed again while the test runs.
PATIENT = {
    "FEEDWATCH_TASK_SOFT_TIME_LIMIT": "200",
    "FEEDWATCH_TASK_HARD_TIME_LIMIT": "240",
    "FEEDWATCH_CLAIM_LEASE_SECONDS": "300",
}


class Stack:
    def __init__(self, tmp: Path, feeds_file: Path, db_url: str | None, **env: str) -> None:
        self.tmp = tmp
        self.home = tmp / "home"
        self.db_url = db_url or f"sqlite:///{self.home / 'feedwatch.db'}"
        overrides = {**FAST_RECOVERY, "FEEDWATCH_FEEDS_FILE": str(feeds_file), **env}
        if db_url:
            overrides["FEEDWATCH_DATABASE_URL"] = db_url
        self.env = service_env(self.home, **overrides)
        self.procs: list[ServiceProcess] = []
        self._engine: Engine | None = None
        self._n = 0

    @property
    def alerts_file(self) -> Path:
        return self.home / "alerts.jsonl"

    def _start(self, args: list[str], name: str, **env: str) -> ServiceProcess:
        self._n += 1
        proc = ServiceProcess(args, {**self.env, **env}, self.tmp / f"{self._n:02d}-{name}.log")
        self.procs.append(proc)
        return proc

    def worker(self, *args: str, **env: str) -> ServiceProcess:
        """``feedwatch run`` (migrations, feed sync, then the Celery worker)."""
        return self._start(feedwatch_cmd("run", *args), "worker", **env)

    def beat(self, *args: str, **env: str) -> ServiceProcess:
        """A standalone ``celery beat`` with its own schedule file."""
        schedule = str(self.tmp / f"beat-{self._n + 1}.schedule")
        cmd = [sys.executable, "-m", "celery", "-A", "workers.app", "beat", "-s", schedule, "-l", "INFO"]
        return self._start([*cmd, *args], "beat", **env)

    def cli(self, *args: str, **env: str) -> ServiceProcess:
        return self._start(feedwatch_cmd(*args), args[0], **env)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        if self._engine is not None:
            self._engine.dispose()

    # --- reading the outcome ---

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(self.db_url, pool_pre_ping=True)
        return self._engine

    def rows(self, model: Any) -> list[Any]:
        try:
            with Session(self.engine) as session:
                return list(session.exec(select(model)).all())
        except Exception:  # the schema may not exist yet, or the database is down on purpose
            return []

    def alerts(self) -> list[Alert]:
        return self.rows(Alert)

    def deliveries(self) -> list[Delivery]:
        return self.rows(Delivery)

    def articles(self) -> list[Article]:
        return self.rows(Article)

    def feeds(self) -> list[Feed]:
        return self.rows(Feed)

    def delivery(self, channel: str) -> Delivery | None:
        return next((d for d in self.deliveries() if d.channel == channel), None)

    def lines_per_key(self) -> Counter[str]:
        return Counter(str(line["idempotency_key"]) for line in jsonl(self.alerts_file))

    def wait_delivered(self, count: int, proc: ServiceProcess, timeout: float = 60) -> None:
        def done() -> bool:
            alerts = self.alerts()
            return len(alerts) >= count and all(a.status == "delivered" for a in alerts)

        wait_for(done, timeout, f"{count} alert(s) delivered", proc)

    def execute(self, sql: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(sql))
