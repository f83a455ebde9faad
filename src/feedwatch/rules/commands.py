"""``feedwatch rules test|eval``: try rules on a text, or score them on a labeled file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from feedwatch.rules.compile import load_rulebook
from feedwatch.rules.engine import Rulebook
from feedwatch.rules.evaluate import LabelError, Report, evaluate, read_labeled
from feedwatch.rules.model import Hit, RulesError, TopicMatch
from feedwatch.rules.morph import MORPHOLOGIES

_rules_option = click.option(
    "--rules",
    "rules_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Rules file (default: the rules_file setting, FEEDWATCH_RULES_FILE).",
)
_morph_option = click.option(
    "--morphology",
    type=click.Choice(MORPHOLOGIES),
    default=None,
    help="Override the rules file's morphology mode (to compare stemming with wildcards).",
)


def _load(rules_path: Path | None, morphology: str | None) -> Rulebook:
    if rules_path is None:
        from feedwatch.settings import get_settings

        rules_path = get_settings().rules_file
    try:
        return load_rulebook(rules_path, morphology=morphology)
    except RulesError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group(help="Check and measure the topic rules.")
def rules() -> None:
    pass


def _highlight(text: str, hits: list[Hit]) -> Text:
    out = Text(text)
    for h in hits:
        out.stylize("bold reverse", h.start, h.end)
    return out


def _print_match(console: Console, m: TopicMatch, title: str, body: str) -> None:
    console.print(
        f"[bold green]{escape(m.topic)}[/]  score {m.score:g} (threshold {m.threshold:g})  "
        f"clauses: {escape(', '.join(m.clauses))}"
    )
    console.print("  terms: " + escape(", ".join(m.terms)), highlight=False)
    for field, text in (("title", title), ("body", body)):
        field_hits = [h for h in m.hits if h.field == field]
        if field_hits:
            console.print(Text(f"  {field}: ").append(_highlight(text, field_hits)))


@rules.command("test", help="Show which topics TEXT (or --file) matches, with highlights.")
@click.argument("text", required=False)
@click.option(
    "--file",
    "file",
    type=click.File(encoding="utf-8"),
    default=None,
    help="Read the item from a file: first line is the title, the rest the body.",
)
@click.option("--title", default=None, help="Title; TEXT or --file then gives the body.")
@click.option("--json", "as_json", is_flag=True, help="Print explanations as JSON.")
@_rules_option
@_morph_option
def test_cmd(
    text: str | None,
    file: IO[str] | None,
    title: str | None,
    as_json: bool,
    rules_path: Path | None,
    morphology: str | None,
) -> None:
    if file is not None:
        content = file.read()
    elif text is not None:
        content = text
    else:
        raise click.UsageError("give TEXT or --file")
    if title is None:
        head, _, rest = content.partition("\n")
        title, body = (head, rest) if file is not None else (content, "")
    else:
        body = content
    rulebook = _load(rules_path, morphology)
    matches = rulebook.match(title, body)
    if as_json:
        click.echo(json.dumps([m.explanation() for m in matches], ensure_ascii=False, indent=2))
        return
    console = Console()
    if not matches:
        console.print(
            "no topic matched" + (" (candidate: some terms occur)" if rulebook.candidate(title, body) else "")
        )
    for m in matches:
        _print_match(console, m, title, body)


@rules.command("eval", help="Precision, recall and F1 of the rules on a labeled JSONL file.")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@_rules_option
@_morph_option
def eval_cmd(path: Path, as_json: bool, rules_path: Path | None, morphology: str | None) -> None:
    rulebook = _load(rules_path, morphology)
    try:
        report = evaluate(rulebook, read_labeled(path))
    except LabelError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False))
        return
    _print_report(Console(), report)


def _print_report(console: Console, report: Report) -> None:
    table = Table(title=f"{report.items} items")
    for col in ("topic", "lang", "precision", "recall", "F1", "tp", "fp", "fn"):
        table.add_column(col, justify="left" if col in ("topic", "lang") else "right")
    rows = [("all", report.topics), *sorted(report.by_lang.items())]
    for lang, per in rows:
        for topic, counts in per.items():
            d = counts.as_dict()
            table.add_row(
                topic,
                lang,
                f"{d['precision']:.3f}",
                f"{d['recall']:.3f}",
                f"{d['f1']:.3f}",
                str(d["tp"]),
                str(d["fp"]),
                str(d["fn"]),
            )
    console.print(table)
    for kind, label in (("miss", "Misses"), ("false_alarm", "False alarms")):
        errors = [e for e in report.errors if e.kind == kind]
        console.print(f"[bold]{label}: {len(errors)}[/]")
        for e in errors:
            console.print(
                f"  line {e.line} \\[{escape(e.lang)}] {escape(e.topic)} (score {e.score:g}): "
                f"{escape(e.title[:100])}",
                highlight=False,
            )


if __name__ == "__main__":  # pragma: no cover
    rules(sys.argv[1:])
