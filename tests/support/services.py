"""Real services for tests: Redis, PostgreSQL, a local feed server, a feedwatch worker process.

A missing service skips the test locally and fails it in CI (``CI`` set): the dramatiq pattern.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
PG_ADMIN_URL = os.environ.get("FEEDWATCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def compose_queues(service: str) -> str:
    """The ``-Q`` a docker-compose.yml service's worker is started with."""
    import yaml

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    command = [str(part) for part in compose["services"][service]["command"]]
    return command[command.index("-Q") + 1]


def missing(reason: str) -> None:
    """Skip locally, fail in CI: a CI run without its services must not pass quietly."""
    if os.environ.get("CI"):
        pytest.fail(f"required service missing in CI: {reason}")
    pytest.skip(reason)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_postgres() -> None:
    """Skip (fail in CI, :func:`missing`) where the test PostgreSQL server does not answer."""
    if not port_open("127.0.0.1", 5432):
        missing("PostgreSQL not reachable at 127.0.0.1:5432")


def redis_url(db: int) -> str:
    """A Redis URL on a dedicated database number, flushed first."""
    if not port_open(REDIS_HOST, REDIS_PORT):
        missing(f"Redis not reachable at {REDIS_HOST}:{REDIS_PORT}")
    import redis

    redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db).flushdb()
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (or module), dropped afterwards."""
    require_postgres()
    import psycopg

    name = f"fw_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        from feedwatch.db import dispose_engines

        dispose_engines()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- a feed server on loopback -------------------------------------------------------------------


@dataclass
class Route:
    body: bytes
    content_type: str = "application/rss+xml; charset=utf-8"
    status: int = 200
    etag: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class FeedServer:
    """Serves routes on 127.0.0.1 in a thread; counts hits per path; honours If-None-Match."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.conditional_hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.hits[self.path] += 1
                    route = server.routes.get(self.path)
                    if self.headers.get("If-None-Match"):
                        server.conditional_hits[self.path] += 1
                if route is None:
                    self.send_error(404)
                    return
                if route.etag and self.headers.get("If-None-Match") == route.etag:
                    self.send_response(304)
                    self.send_header("ETag", route.etag)
                    self.end_headers()
                    return
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(route.body)))
                if route.etag:
                    self.send_header("ETag", route.etag)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(route.body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> FeedServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- a feedwatch process -------------------------------------------------------------------------


class ServiceProcess:
    """``feedwatch run`` (or any command) in its own process group, stopped by pid."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            args, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (the worker and its pool children)."""
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 15) -> None:
        if self.alive():
            self.kill(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.proc.wait(5)
        self.kill(signal.SIGKILL)  # pool children left behind, if any
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def feedwatch_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "feedwatch", *args]


def service_env(home: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDWATCH_")}
    env.update(
        FEEDWATCH_HOME=str(home),
        FEEDWATCH_ALLOW_PRIVATE_NETWORKS="true",
        FEEDWATCH_RULES_FILE=os.environ.get("FEEDWATCH_TEST_RULES_FILE", str(REPO / "config" / "rules.toml")),
        FEEDWATCH_TICK_SECONDS="1",
        FEEDWATCH_LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, proc: ServiceProcess | None = None
) -> None:
    """Poll ``predicate`` until true; fail with the service's log tail when it never is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and not proc.alive():
            pytest.fail(f"service exited while waiting for {what}:\n{log_tail(proc)}")
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout}s waiting for {what}\n{log_tail(proc) if proc else ''}")


def log_tail(proc: ServiceProcess, chars: int = 6000) -> str:
    """The end of a service's log without the embedded beat's once-a-second "Sending due task"
    lines, which filled the whole tail of a worker that had stopped consuming (a fault test's
    failure showed nothing else)."""
    lines = [line for line in proc.output().splitlines() if "Scheduler: Sending due task" not in line]
    return "\n".join(lines)[-chars:]
