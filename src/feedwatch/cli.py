"""The ``feedwatch`` command line: run the service, one-shot tools for humans, operations.

Celery is imported only inside ``run`` (and the commands that publish messages), so the rest
of the CLI works with no broker at all.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from dataclasses import asdict
from typing import Any

import click

from feedwatch import db, store
from feedwatch.metrics import ensure_multiprocess_dir
from feedwatch.settings import Settings, get_settings
from feedwatch.terminal import command_settings, err, out
from feedwatch.timeutil import utcnow


def prepare(settings: Settings) -> None:
    """Everything a service start needs before Celery: data dir, schema, feeds, rules."""
    from feedwatch.pipeline import get_rulebook
    from feedwatch.sources import load_feeds

    settings.home.mkdir(parents=True, exist_ok=True)
    db.upgrade(settings)
    specs = load_feeds(settings.feeds_file, settings.default_interval_minutes)
    get_rulebook(settings.rules_file)  # invalid rules refuse the start, with file and line
    with db.session_scope(settings) as session:
        report = store.sync_feeds(session, specs, utcnow())
    err.print(
        f"[bold]feedwatch[/]: {len(specs)} feeds from {settings.feeds_file} "
        f"({report.added} new, {report.disabled} disabled); rules {settings.rules_file}; "
        f"database {_redact(settings.database_url)}; broker {_redact(settings.broker_url)}"
    )


def _redact(url: str) -> str:
    """A URL without its password, for humans and logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


class _Group(click.Group):
    """Turns the errors a user can fix (settings, database) into one plain line, exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        from pydantic import ValidationError
        from sqlalchemy.exc import OperationalError, ProgrammingError

        try:
            return super().invoke(ctx)
        except ValidationError as exc:
            problems = "; ".join(
                f"FEEDWATCH_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
            )
            err.print(f"[red]feedwatch: invalid settings:[/] {problems}")
        except (OperationalError, ProgrammingError) as exc:
            err.print(
                f"[red]feedwatch: database error:[/] {str(exc.orig).strip()}\n"
                "Is the database reachable and migrated? `feedwatch db upgrade` applies the schema."
            )
        sys.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="feedwatch")
def main() -> None:
    """feedwatch: news feed monitoring with multilingual keyword alerts."""


@main.command()
@click.option(
    "--concurrency",
    "-c",
    type=int,
    default=None,
    help="Worker processes (default FEEDWATCH_WORKER_CONCURRENCY).",
)
@click.option(
    "--queues", "-Q", default="feeds,alerts,default,articles", show_default=True, help="Queues to consume."
)
@click.option(
    "--beat/--no-beat",
    default=True,
    show_default=True,
    help="Run the scheduler inside this worker.",
)
@click.option(
    "--articles-pool",
    type=int,
    default=1,
    show_default=True,
    help="Processes of a separate worker for the `articles` queue (0: share this worker's pool).",
)
@click.option("--prepare/--no-prepare", "prepare_", default=True, hidden=True)
def run(concurrency: int | None, queues: str, beat: bool, articles_pool: int, prepare_: bool) -> None:
    """Run the service: a Celery worker with embedded beat (embedded defaults: no servers)."""
    settings = get_settings()
    ensure_multiprocess_dir(settings, fresh=True)
    settings = command_settings()
    if prepare_:
        try:
            prepare(settings)
        except Exception as exc:  # noqa: BLE001 - a start-up refusal is shown plainly
            err.print(f"[red]feedwatch run: cannot start:[/] {exc}")
            sys.exit(2)
    from workers.app import app, check_config

    check_config(settings)
    names = [q for q in queues.split(",") if q]
    if articles_pool > 0 and "articles" in names and len(names) > 1:
        # Full-text extraction is slow: its own pool keeps feed polling at full speed.
        names.remove("articles")
        _spawn_articles_worker(articles_pool)
    worker = app.Worker(
        hostname=f"feedwatch-{os.getpid()}@{socket.gethostname()}",
        queues=names,
        concurrency=concurrency or settings.worker_concurrency,
        beat=beat,
        loglevel=settings.log_level.upper(),
        pool="prefork",
        optimization="fair",
    )
    worker.start()
    # The worker has shut its pool down. Leave without the interpreter's exit hooks: billiard's
    # pool finalizer can block forever on a queue lock a dead child held (seen on SIGTERM
    # during start-up), which would turn a clean stop into a hang.
    _stop_children()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(worker.exitcode or 0)


@main.group("db")
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply Alembic migrations (``run`` does this itself)."""
    settings = command_settings()
    db.upgrade(settings, revision)
    err.print(f"database at {revision}: {_redact(settings.database_url)}")


_children: list[Any] = []


def _stop_children() -> None:
    for stop in _children:
        stop()


def _spawn_articles_worker(concurrency: int) -> None:
    """A second worker for the `articles` queue, ended with this process (even by SIGKILL)."""
    import atexit
    import ctypes
    import signal
    import subprocess

    def die_with_parent() -> None:
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)

    args = ["run", "-Q", "articles", "--no-beat", "-c", str(concurrency), "--articles-pool", "0"]
    child = subprocess.Popen(
        [sys.executable, "-m", "feedwatch", *args, "--no-prepare"], preexec_fn=die_with_parent
    )

    def stop() -> None:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()

    _children.append(stop)
    atexit.register(stop)


@main.command()
@click.option("--dry-run", is_flag=True, help="Do not store anything.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per source on stdout.")
@click.argument("sources", nargs=-1, required=True)
def ingest(dry_run: bool, as_json: bool, sources: tuple[str, ...]) -> None:
    """Fetch (URL) or read (file) SOURCE, parse, normalize, match and store it once."""
    from feedwatch.pipeline import Context
    from feedwatch.pipeline import ingest as run_ingest

    settings = command_settings()
    if not dry_run:
        db.upgrade(settings)
    ctx = Context(settings=settings, publish_alert=_publisher() if not dry_run else None)
    failed = 0
    for source in sources:
        report = run_ingest(ctx, source, dry_run)
        failed += not report.ok
        if as_json:
            click.echo(json.dumps(asdict(report), ensure_ascii=False, default=str))
        else:
            _print_ingest(report)
    sys.exit(1 if failed else 0)


def _publisher() -> Any:
    """Publish deliver_alert when a broker answers; otherwise the outbox keeps the alert."""

    def send(alert_ids: list[int]) -> None:
        from workers.tasks import deliver_alert, publish

        publish(deliver_alert, alert_ids, retry=False)

    return send


def _print_ingest(report: Any) -> None:
    from rich.table import Table

    if not report.ok:
        out.print(f"[red]{report.source}: {report.error_class}[/] {report.error}")
        return
    table = Table(
        title=f"{report.source}: {report.entries} entries, {report.new} new, {report.flagged} flagged"
    )
    table.add_column("new")
    table.add_column("title", overflow="fold")
    table.add_column("lang")
    table.add_column("topics (score: terms)", overflow="fold")
    for item in report.items:
        topics = "\n".join(f"{t['topic']} ({t['score']}: {', '.join(t['terms'][:5])})" for t in item.topics)
        table.add_row("•" if item.new else "", item.title, item.language or "", topics)
    out.print(table)


def _register_commands() -> None:
    from feedwatch.ops import alerts, feeds, serve_metrics, status
    from feedwatch.rules.commands import rules
    from feedwatch.websub import websub

    for command in (rules, status, feeds, alerts, serve_metrics, websub):
        main.add_command(command)


_register_commands()
