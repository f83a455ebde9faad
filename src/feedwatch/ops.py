"""Operator commands: ``status``, ``feeds``, ``alerts``, ``serve-metrics`` (click objects).

Every command reads the database directly and asks the broker only when it must (``status``
pings workers; ``alerts retry`` publishes), so they work with the broker down. Text that came
from feeds (names, titles, error messages, snippets) is printed as plain ``rich.text.Text``,
never as markup, and without control characters: it is data.
"""

from __future__ import annotations

import importlib
import json
import sys
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click
from rich import filesize
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy import select
from sqlmodel import Session, col

from feedwatch import known, splice
from feedwatch.db import session_scope
from feedwatch.models import Alert, AlertStatus, Article, Delivery, Feed, Match
from feedwatch.settings import get_settings
from feedwatch.status import check_status, collect_status
from feedwatch.terminal import command_settings, err, out
from feedwatch.timeutil import isoformat_utc


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return isoformat_utc(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(_jsonable(value), ensure_ascii=False))


def _table(title: str, columns: Sequence[str]) -> Table:
    """A table whose columns fold long feed text instead of cutting it."""
    table = Table(title=title)
    for name in columns:
        table.add_column(name, overflow="fold")
    return table


def _t(value: Any) -> Text:
    """A table cell that is never parsed as markup."""
    if value is None:
        return Text("–", style="dim")
    if isinstance(value, datetime):
        return Text(isoformat_utc(value) or "")
    return Text(_printable(str(value)))


def _printable(text: str) -> str:
    """Without control characters (ESC sequences from a feed must not drive the terminal)."""
    return "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


# --- status ------------------------------------------------------------------------------------


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--check",
    is_flag=True,
    help="Health check: print the failing reasons (or 'healthy') and exit 1 if any.",
)
@click.option(
    "--ping-timeout",
    type=float,
    default=2.0,
    show_default=True,
    help="Seconds to wait for workers to answer (0 skips the ping).",
)
def status(as_json: bool, check: bool, ping_timeout: float) -> None:
    """Queues, workers, beat, feeds, alert backlog and recent articles."""
    settings = command_settings()
    report = collect_status(settings, ping_timeout=ping_timeout)
    problems = check_status(report, settings)
    report["healthy"] = not problems
    report["problems"] = problems
    if as_json:
        _echo_json(report)
    elif check:
        for reason in problems:
            click.echo(f"UNHEALTHY: {reason}")
        if not problems:
            click.echo("healthy")
    else:
        render_status(report, out)
    if check and problems:
        sys.exit(1)


def render_status(report: dict[str, Any], console: Console) -> None:
    db, broker, workers = report["database"], report["broker"], report["workers"]
    head = Table(title=f"feedwatch status at {report['generated_at']}", show_header=False)
    head.add_row("database", _t(db["url"]), _ok(db["ok"], db["error"]))
    for warning in db.get("warnings") or []:
        head.add_row("", "", Text(f"warning: {_printable(warning)}", style="yellow"))
    head.add_row("broker", _t(broker["url"]), _ok(broker["ok"], broker["error"]))
    beat = report["beat"]
    if beat is not None:
        late = "[red]late[/]" if beat["late"] else "[green]on time[/]"
        head.add_row("beat", _t(beat["last_tick_at"] or "never"), f"{_age(beat['age_seconds'])} ago, {late}")
    console.print(head)

    queues = Table(title="queues")
    for name in ("queue", "ready", "unacked", "oldest ready"):
        queues.add_column(name, justify="right" if name != "queue" else "left")
    for name, q in report["queues"].items():
        queues.add_row(name, _t(q["ready"]), _t(q["unacked"]), _age(q["oldest_ready_age_seconds"]))
    console.print(queues)

    answered = workers.get("answered") or []
    wtable = Table(title=f"workers ({len(answered)} answered)")
    for name in ("worker", "queues", "active"):
        wtable.add_column(name)
    for w in answered:
        wtable.add_row(_t(w["name"]), _t(", ".join(w["queues"])), _t(w["active"]))
    if workers.get("error"):
        wtable.caption = Text(f"not asked or no answer: {_printable(workers['error'])}")
    console.print(wtable)

    if report["feeds"] is not None:
        _render_db_side(report, console)

    problems = report.get("problems") or []
    if problems:
        for reason in problems:
            console.print(Text(f"✗ {reason}", style="bold red"))
    else:
        console.print(Text("✓ healthy", style="bold green"))


def _ok(ok: bool | None, error: str | None) -> Text:
    if ok is None:
        return Text(error or "unknown", style="yellow")
    if ok:
        return Text("ok", style="green")
    return Text(f"DOWN: {error}", style="bold red")


def _render_db_side(report: dict[str, Any], console: Console) -> None:
    feeds, alerts, articles = report["feeds"], report["alerts"], report["articles"]
    summary = Table(title="feeds, alerts, articles", show_header=False)
    states = ", ".join(f"{k} {v}" for k, v in feeds["by_state"].items())
    summary.add_row("feeds", f"{feeds['total']} total: {states}; overdue {feeds['overdue']}")
    summary.add_row(
        "alerts",
        f"pending {alerts['pending']}, queued {alerts['queued']}, delivered "
        f"{alerts['delivered']}, failed {alerts['failed']}; oldest undelivered "
        f"{_age(alerts['oldest_backlog_age_seconds'])}",
    )
    summary.add_row(
        "articles",
        f"last hour {articles['last_hour']}, last day {articles['last_day']} "
        f"({articles['flagged_last_day']} flagged)",
    )
    console.print(summary)
    if feeds["worst"]:
        console.print(_feed_error_table(feeds["worst"], "feeds with errors (worst first)"))


def _feed_error_table(rows: Sequence[dict[str, Any]], title: str) -> Table:
    table = _table(title, ("id", "feed", "state", "errors", "class", "last error", "message"))
    for f in rows:
        table.add_row(
            _t(f["id"]),
            _t(f["name"] or f["url"]),
            _t(f["state"]),
            _t(f["error_count"]),
            _t(f["error_class"]),
            _t(f["last_error_at"]),
            _t(f["error_message"]),
        )
    return table


# --- feeds -------------------------------------------------------------------------------------


@click.group("feeds")
def feeds() -> None:
    """Feeds: state, schedule, errors."""


def _feed_row(f: Feed) -> dict[str, Any]:
    return {
        "id": f.id,
        "name": f.name,
        "url": f.url,
        "enabled": f.enabled,
        "state": f.state,
        "next_check_at": isoformat_utc(f.next_check_at),
        "next_check_reason": f.next_check_reason,
        "last_ok_at": isoformat_utc(f.last_ok_at),
        "last_status": f.last_status,
        "body_bytes": f.body_bytes,
        "error_count": f.error_count,
        "error_class": f.error_class,
        "error_message": f.error_message,
        "last_error_at": isoformat_utc(f.last_error_at),
    }


@feeds.command("list")
@click.option("--state", default=None, help="Only feeds in this state.")
@click.option("--json", "as_json", is_flag=True)
def feeds_list(state: str | None, as_json: bool) -> None:
    """Every feed with its state and next check."""
    with session_scope(command_settings()) as session:
        stmt = select(Feed).order_by(col(Feed.id))
        if state:
            stmt = stmt.where(col(Feed.state) == state)
        rows = [_feed_row(f) for f in session.execute(stmt).scalars()]
    if as_json:
        _echo_json(rows)
        return
    table = _table(
        f"{len(rows)} feeds",
        ("id", "name", "state", "on", "next check", "reason", "last ok", "size", "errors"),
    )
    for f in rows:
        table.add_row(
            _t(f["id"]),
            _t(f["name"] or f["url"]),
            _t(f["state"]),
            "✓" if f["enabled"] else "✗",
            _t(f["next_check_at"]),
            _t(f["next_check_reason"]),
            _t(f["last_ok_at"]),
            # The last body's size: what the tick sizes its poll batches by.
            _t("-" if f["body_bytes"] is None else filesize.decimal(f["body_bytes"])),
            _t(f"{f['error_count']} {f['error_class'] or ''}".strip()),
        )
    out.print(table)


@feeds.command("show")
@click.argument("feed_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def feeds_show(feed_id: int, as_json: bool) -> None:
    """One feed: schedule, validators, errors, poll and redirect history."""
    with session_scope(command_settings()) as session:
        feed = session.get(Feed, feed_id)
        if feed is None:
            raise click.ClickException(f"no feed {feed_id}")
        dumped = feed.model_dump()
        data = _jsonable({name: dumped.get(name) for name in Feed.model_fields})
        # Shown as what they mean: how many entries of the last parse are known to be stored,
        # and how many items the next parse can leave unparsed if their bytes recur.
        prints = feed.entry_fingerprints or b""
        data["entry_fingerprints"] = len(prints) // known.SIZE
        record = splice.Record.decode(feed.item_spans)
        data["item_spans"] = len(record.items) if record is not None else 0
    if as_json:
        _echo_json(data)
        return
    table = Table(title=f"feed {feed_id}", show_header=False)
    history = {"poll_history", "redirect_history"}
    for key, value in data.items():
        if key not in history:
            table.add_row(key, _t(value))
    out.print(table)
    polls = Table(title="poll history (newest last)")
    for name in ("at", "polls", "outcome", "status", "entries", "new", "error class"):
        polls.add_column(name)
    for p in data["poll_history"]:
        # A run of quiet polls is one entry: from its first poll to its last, and how many.
        at = f"{p['since']} … {p.get('at')}" if p.get("since") else p.get("at")
        cells = (
            at,
            p.get("n", 1),
            *(p.get(k) for k in ("outcome", "status", "entries", "new", "error_class")),
        )
        polls.add_row(*(_t(c) for c in cells))
    out.print(polls)
    redirects = Table(title="redirect history")
    redirects.add_column("at")
    redirects.add_column("chain (status source → target)", overflow="fold")
    for r in data["redirect_history"]:
        chain = "\n".join(f"{s} {src} → {dst}" for s, src, dst in r.get("chain", []))
        redirects.add_row(_t(r.get("at")), _t(chain))
    out.print(redirects)


@feeds.command("errors")
@click.option("--json", "as_json", is_flag=True)
def feeds_errors(as_json: bool) -> None:
    """Feeds whose last poll failed, most consecutive errors first."""
    with session_scope(command_settings()) as session:
        stmt = (
            select(Feed).where(col(Feed.error_count) > 0).order_by(col(Feed.error_count).desc(), col(Feed.id))
        )
        rows = [_feed_row(f) for f in session.execute(stmt).scalars()]
    if as_json:
        _echo_json(rows)
        return
    by_class: dict[str, int] = {}
    for f in rows:
        by_class[f["error_class"] or "?"] = by_class.get(f["error_class"] or "?", 0) + 1
    out.print(_feed_error_table(rows, f"{len(rows)} feeds with errors"))
    if by_class:
        out.print(Text("by class: " + ", ".join(f"{k} {v}" for k, v in sorted(by_class.items()))))


# --- alerts ------------------------------------------------------------------------------------


@click.group("alerts")
def alerts() -> None:
    """Alerts in the outbox: list, inspect, replay."""


@alerts.command("list")
@click.option("--status", "status_", type=click.Choice(AlertStatus.ALL), default=None)
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def alerts_list(status_: str | None, limit: int, as_json: bool) -> None:
    """The newest alerts with their article title."""
    with session_scope(command_settings()) as session:
        stmt = (
            select(Alert, col(Article.title))
            .join(Article, col(Article.id) == col(Alert.article_id))
            .order_by(col(Alert.id).desc())
            .limit(limit)
        )
        if status_:
            stmt = stmt.where(col(Alert.status) == status_)
        rows = [{**_jsonable(alert.model_dump()), "title": title} for alert, title in session.execute(stmt)]
    if as_json:
        _echo_json(rows)
        return
    table = _table(
        f"{len(rows)} alerts",
        ("id", "status", "topics", "tries", "created", "delivered", "title", "last error"),
    )
    for a in rows:
        table.add_row(
            _t(a["id"]),
            _t(a["status"]),
            _t(", ".join(a["topics"])),
            _t(a["attempts"]),
            _t(a["created_at"]),
            _t(a["delivered_at"]),
            _t(a["title"]),
            _t(a["last_error"]),
        )
    out.print(table)


def alert_detail(session: Session, alert_id: int) -> dict[str, Any] | None:
    alert = session.get(Alert, alert_id)
    if alert is None:
        return None
    article = session.get(Article, alert.article_id)
    feed = session.get(Feed, article.feed_id) if article else None
    matches = session.execute(
        select(Match).where(col(Match.article_id) == alert.article_id).order_by(col(Match.score).desc())
    ).scalars()
    deliveries = session.execute(
        select(Delivery).where(col(Delivery.alert_id) == alert_id).order_by(col(Delivery.channel))
    ).scalars()
    detail: dict[str, Any] = _jsonable(
        {
            **alert.model_dump(),
            "article": {
                "id": article.id,
                "title": article.title,
                "url": article.url,
                "language": article.language,
                "published_at": article.published_at,
                "feed": (feed.name or feed.url) if feed else None,
            }
            if article
            else None,
            "matches": [
                {
                    "topic": m.topic,
                    "score": round(m.score, 3),
                    "terms": m.terms,
                    "snippet": m.snippet,
                    "stage": m.stage,
                }
                for m in matches
            ],
            "deliveries": [
                {
                    "channel": d.channel,
                    "status": d.status,
                    "attempts": d.attempts,
                    "last_error": d.last_error,
                    "claimed_at": d.claimed_at,
                    "sent_at": d.sent_at,
                }
                for d in deliveries
            ],
        }
    )
    return detail


@alerts.command("show")
@click.argument("alert_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def alerts_show(alert_id: int, as_json: bool) -> None:
    """One alert: its article, why it matched, and each channel's delivery."""
    with session_scope(command_settings()) as session:
        data = alert_detail(session, alert_id)
    if data is None:
        raise click.ClickException(f"no alert {alert_id}")
    if as_json:
        _echo_json(data)
        return
    head = Table(title=f"alert {alert_id}", show_header=False)
    for key in ("status", "topics", "attempts", "created_at", "queued_at", "delivered_at", "last_error"):
        value = data[key]
        head.add_row(key, _t(", ".join(value) if isinstance(value, list) else value))
    for key, value in (data["article"] or {}).items():
        head.add_row(f"article.{key}", _t(value))
    out.print(head)
    matches = _table("matches", ("topic", "score", "terms", "snippet"))
    for m in data["matches"]:
        matches.add_row(_t(m["topic"]), _t(m["score"]), _t(", ".join(m["terms"])), _t(m["snippet"]))
    out.print(matches)
    deliveries = _table("deliveries", ("channel", "status", "attempts", "sent", "last error"))
    for d in data["deliveries"]:
        deliveries.add_row(
            _t(d["channel"]), _t(d["status"]), _t(d["attempts"]), _t(d["sent_at"]), _t(d["last_error"])
        )
    out.print(deliveries)


def _publish_alert(alert_ids: list[int]) -> None:
    # By name: feedwatch never imports workers at module level (layering).
    tasks = importlib.import_module("workers.tasks")
    tasks.publish(tasks.deliver_alert, alert_ids, retry=False)


@alerts.command("retry")
@click.argument("alert_ids", nargs=-1, type=int)
@click.option("--failed", is_flag=True, help="Replay every failed alert.")
def alerts_retry(alert_ids: tuple[int, ...], failed: bool) -> None:
    """Replay alerts: reset dead deliveries, back to pending, publish again."""
    from feedwatch.alerts import retry_alerts
    from feedwatch.pipeline import Context, publish_alerts

    if bool(alert_ids) == failed:
        raise click.UsageError("give alert ids or --failed (not both)")
    settings = command_settings()
    with session_scope(settings) as session:
        ids = retry_alerts(session, list(alert_ids) if alert_ids else None)
    if not ids:
        click.echo("nothing to retry")
        return
    click.echo(f"reset {len(ids)} alert(s) to pending: {', '.join(map(str, ids))}")
    published = publish_alerts(Context(settings=settings, publish_alert=_publish_alert), ids)
    if published == len(ids):
        click.echo(f"published {published} alert(s) to the alerts queue")
    else:
        click.echo(
            f"published {published} of {len(ids)}: the broker did not take the rest; they stay "
            "pending in the outbox and the next beat tick will send them"
        )


# --- metrics server ----------------------------------------------------------------------------


@click.command("serve-metrics")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=None, help="Default FEEDWATCH_METRICS_PORT.")
@click.option(
    "--ping-timeout",
    type=float,
    default=1.0,
    show_default=True,
    help="Seconds each scrape waits for workers to answer (0: no worker metrics).",
)
def serve_metrics(host: str, port: int | None, ping_timeout: float) -> None:
    """Serve /metrics (Prometheus), /healthz and /readyz over HTTP."""
    from feedwatch.metrics import ensure_multiprocess_dir, make_server, multiprocess_dir

    ensure_multiprocess_dir(get_settings(), fresh=False)
    settings = command_settings()
    server = make_server(settings, host, port or settings.metrics_port, ping_timeout)
    bound_host, bound_port = server.server_address[:2]
    mode = f"multiprocess ({multiprocess_dir()})" if multiprocess_dir() else "single process"
    err.print(
        f"feedwatch metrics on http://{bound_host!s}:{bound_port}/metrics "
        f"(/healthz, /readyz); counters: {mode}"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


COMMANDS = (status, feeds, alerts, serve_metrics)
