"""Fault-injection helpers: private servers to kill, a feed server that holds responses, probes.

Nothing here touches the machine's shared Redis or PostgreSQL: a test that kills, freezes or
restarts a server gets its own on a free port, stopped by pid when the test ends.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from support.services import free_port, missing, port_open

# --- a private Redis -----------------------------------------------------------------------------


class PrivateRedis:
    """``redis-server`` on a free loopback port, keeping nothing on disk (like the deployed one)."""

    def __init__(self, workdir: Path) -> None:
        if shutil.which("redis-server") is None:
            missing("redis-server is not installed")
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> PrivateRedis:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.workdir), "--logfile", "redis.log"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: port_open("127.0.0.1", self.port), 10, "private redis-server to listen")
        return self

    def _signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: everything in memory is gone, as in a crash of a server without persistence."""
        self._signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self) -> None:
        self._signal(signal.SIGCONT)  # a frozen server cannot act on SIGTERM
        self._signal(signal.SIGTERM)
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def freeze(self) -> None:
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal(signal.SIGCONT)


# --- a private PostgreSQL cluster ----------------------------------------------------------------

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1:] or [""]


class PrivatePostgres:
    """A throwaway cluster (initdb into a temp dir owned by ``postgres``), trust auth on loopback."""

    def __init__(self) -> None:
        self.bin = Path(PG_BIN[0])
        if not (self.bin / "initdb").exists():
            missing("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="fw-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        cmd = ["runuser", "-u", "postgres", "--", str(self.bin / tool), *args]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> PrivatePostgres:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        data, log = str(self.dir / "data"), str(self.dir / "server.log")
        self._run("pg_ctl", "-D", data, "-o", opts, "-l", log, "-w", "start")
        return self

    def pid(self) -> int | None:
        pidfile = self.dir / "data" / "postmaster.pid"
        return int(pidfile.read_text().split()[0]) if pidfile.exists() else None

    def stop(self) -> None:
        """A fast shutdown: every session is cut, as in a database restart under load."""
        if self.pid() is not None:
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        with suppress(subprocess.CalledProcessError):
            self.stop()
        pid = self.pid()
        if pid is not None:  # pg_ctl failed: stop the postmaster by its pid
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


# --- a feed server that can hold a response ------------------------------------------------------


class GatedFeedServer:
    """Serves feeds on 127.0.0.1; ``hold(path)`` parks the next request until ``release(path)``.

    A parked request makes "in the middle of polling" a fixed moment: the test kills while the
    worker waits for the body. ``hang(path)`` parks every request to that path for good.
    """

    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}
        self.hits: Counter[str] = Counter()
        self.parked: Counter[str] = Counter()
        self._holds: dict[str, int] = {}
        self._gates: dict[str, threading.Event] = {}
        self._hang = threading.Event()
        self._hung: set[str] = set()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                gate = server._arrive(self.path)
                if gate is not None:
                    gate.wait()
                    with server._lock:
                        server.parked[self.path] -= 1
                body = server.bodies.get(self.path)
                with suppress(OSError):  # the client may have been killed meanwhile
                    if body is None:
                        self.send_error(404)
                        return
                    self.send_response(200)
                    self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _arrive(self, path: str) -> threading.Event | None:
        with self._lock:
            self.hits[path] += 1
            if path in self._hung:
                self.parked[path] += 1
                return self._hang
            if self._holds.get(path, 0) > 0:
                self._holds[path] -= 1
                self.parked[path] += 1
                return self._gates[path]
        return None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def hold(self, path: str, count: int = 1) -> None:
        """Park the next ``count`` requests to ``path`` until ``release(path)``."""
        with self._lock:
            self._holds[path] = count
            self._gates[path] = threading.Event()

    def hang(self, path: str) -> None:
        """Park every request to ``path`` until the server stops: a feed that never answers."""
        with self._lock:
            self._hung.add(path)

    def release(self, path: str) -> None:
        with self._lock:
            self._holds.pop(path, None)
            gate = self._gates.pop(path, None)
        if gate is not None:
            gate.set()

    def start(self) -> GatedFeedServer:
        self._thread.start()
        return self

    def release_all(self) -> None:
        """Let every parked request go (hung ones get a 404), so workers can stop promptly."""
        self._hang.set()
        for path in list(self._gates):
            self.release(path)

    def stop(self) -> None:
        self.release_all()
        self.httpd.shutdown()
        self.httpd.server_close()


# --- probes --------------------------------------------------------------------------------------


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def children(pid: int) -> list[int]:
    """Direct child pids of ``pid`` (Celery's pool processes of a worker started with --no-beat)."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with suppress(OSError):
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(Path(stat).parent.name))
    return sorted(found)


def jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold the JSONL channel's own exclusive lock: its next send blocks right before writing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# --- distinct flagged stories --------------------------------------------------------------------

#: Six stories that each match the shipped rules and share no sentence, so the near-duplicate
#: check (feedwatch.stories) sees six stories, not copies of one.
STORIES = {
    "a": (
        "Lavrov and Bayramov hold talks in Moscow",
        "Russian Foreign Minister Sergey Lavrov met his Azerbaijani counterpart Jeyhun Bayramov in "
        "Moscow on Monday to discuss bilateral cooperation between Russia and Azerbaijan.",
    ),
    "b": (
        "Armenia and Azerbaijan border commissions meet again",
        "The commissions on the delimitation of the Armenia-Azerbaijan border held another round, "
        "bringing the peace treaty between Yerevan and Baku closer, officials said.",
    ),
    "c": (
        "Aliyev and Putin discuss trade by phone",
        "Azerbaijani President Ilham Aliyev and Russian President Vladimir Putin spoke by phone about "
        "trade, energy and the North-South corridor linking Russia and Azerbaijan.",
    ),
    "d": (
        "Pashinyan says the peace agreement is ready",
        "Armenian Prime Minister Nikol Pashinyan told parliament the text of the peace agreement with "
        "Azerbaijan is finalised and that Armenia is ready to sign it.",
    ),
    "e": (
        "Baku protests to Moscow over airliner crash",
        "Azerbaijan summoned the Russian ambassador in Baku after the crash of an Azerbaijan Airlines "
        "plane, demanding that Russia admit responsibility and pay compensation.",
    ),
    "f": (
        "Transport links through Zangezur discussed",
        "Armenia and Azerbaijan discussed unblocking regional transport links and the route through "
        "Syunik, part of the normalization process between the two countries.",
    ),
}


def story_feed(name: str, extra_items: int = 2) -> bytes:
    """An RSS feed with story ``name`` (guid ``<name>-story``) and a few unrelated items."""
    from support.feeds import UNRELATED, item, rss

    title, text = STORIES[name]
    items = [item(f"{name}-story", title, text, f"https://example.org/{name}/story")]
    items += [
        item(f"{name}-{i}", f"{t} ({name})", f"{body} Edition {name}.", f"https://example.org/{name}/{i}")
        for i, (t, body) in enumerate(UNRELATED[:extra_items])
    ]
    return rss(items, title=f"Outlet {name}")
