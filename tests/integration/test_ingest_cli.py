"""``feedwatch ingest`` as a user runs it: every real feed of ../shared/corpus/feeds, dry run.

One subprocess for all files: no unhandled error, one JSON report per source, each either
parsed or refused with a classified error. Then a stored (non-dry) ingest of the seed feed
flags the seed article for both topics, and a second ingest of the same file adds nothing.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from support.feeds import SEED_TITLE, seed_feed
from support.services import SHARED, feedwatch_cmd, service_env

pytestmark = [pytest.mark.integration, pytest.mark.corpus, pytest.mark.services, pytest.mark.timeout(180)]

TOPICS = {"russia_azerbaijan", "armenia_normalization"}


def _ingest(tmp_path: Path, *args: str) -> tuple[int, list[dict[str, object]], str]:
    proc = subprocess.run(
        feedwatch_cmd("ingest", "--json", *args),
        env=service_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=170,
    )
    reports = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, reports, proc.stderr


def test_every_shared_feed_goes_through_a_dry_run(tmp_path: Path) -> None:
    feeds_dir = SHARED / "corpus" / "feeds"
    if not feeds_dir.is_dir():
        pytest.skip(f"{feeds_dir} is absent (the shared corpus is not beside this clone)")
    files = sorted(str(p) for p in feeds_dir.glob("*.xml"))
    code, reports, stderr = _ingest(tmp_path, "--dry-run", *files)
    assert "Traceback" not in stderr, stderr[-3000:]
    assert [r["source"] for r in reports] == files
    failed = [r for r in reports if not r["ok"]]
    assert all(r["error_class"] for r in failed), failed  # refused, never crashed
    assert code == (1 if failed else 0)
    assert sum(int(r["entries"]) for r in reports) > 1000  # type: ignore[call-overload]
    assert not (tmp_path / "home" / "feedwatch.db").exists()  # a dry run stores nothing


def test_ingest_stores_once_and_flags_the_seed(tmp_path: Path) -> None:
    source = tmp_path / "seed.xml"
    source.write_bytes(seed_feed("cli"))
    code, [first], stderr = _ingest(tmp_path, str(source))
    assert code == 0, stderr[-3000:]
    assert first["new"] == 4 and first["flagged"] == 1
    [seed] = [i for i in first["items"] if i["title"] == SEED_TITLE]  # type: ignore[attr-defined]
    assert {t["topic"] for t in seed["topics"]} == TOPICS
    code, [second], _ = _ingest(tmp_path, str(source))
    assert code == 0 and second["new"] == 0 and second["flagged"] == 0
