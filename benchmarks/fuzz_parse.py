"""Fuzz the parse entry point (parse_feed → normalize_feed) and print JSON figures.

    python benchmarks/fuzz_parse.py --seconds 60            # coverage-guided (atheris)
    python benchmarks/fuzz_parse.py --engine mutation --iterations 20000 --seed 7

Prints ``{"engine", "iterations", "crashes", "slowest_ms", "seconds", "seeds"}``. A crash is any
exception other than ``ParseError`` (the only one ``parse_feed`` may raise); each is written with
its traceback to ``--crash-dir`` so it can be replayed with ``parse_feed(open(f).read())``.

Engines: ``atheris`` (libFuzzer, coverage-guided over feedparser and our parse/normalize code;
the fuzzing runs in a child process because libFuzzer ends its process without returning) and
``mutation`` (byte-level mutations of the seeds with ``random.Random(seed)``: reproducible, no
extra dependency). ``auto`` takes atheris when it is installed. Seeds: tests/fixtures/feeds and,
when present, ../shared/corpus (real feeds and feedparser's test files).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEED_DIRS = (REPO / "tests" / "fixtures" / "feeds", REPO.parent / "shared" / "corpus")
MAX_SEED_BYTES = 64 * 1024  # bigger seeds slow every mutation and add little
URL = "https://fuzz.example/feed"
CONTENT_TYPES = ("", "application/rss+xml", "application/atom+xml", "application/feed+json", "text/html")
TOKENS = (
    b"<![CDATA[", b"]]>", b"<!DOCTYPE x [<!ENTITY a 'aaaa'>]>", b"&a;", b"&#x0;", b"&#1114112;",
    b"<?xml version='1.0' encoding='utf-16'?>", b"\xff\xfe", b"\xef\xbb\xbf", b"</", b"/>",
    b'{"version":"https://jsonfeed.org/version/1.1","items":[', b"9" * 40, b"\x00", b"\xc3\x28",
)  # fmt: skip


def seeds() -> list[bytes]:
    found = []
    for folder in SEED_DIRS:
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                if path.is_file() and path.suffix != ".md" and path.stat().st_size <= MAX_SEED_BYTES:
                    found.append(path.read_bytes())
    return found


class Target:
    """One input through parse → normalize; counts crashes and the slowest input."""

    def __init__(self, crash_dir: Path) -> None:
        from feedwatch.normalize import detect_language

        detect_language("load the language model before timing inputs")
        self.crash_dir = crash_dir
        self.iterations = 0
        self.crashes = 0
        self.slowest_ms = 0.0

    def __call__(self, data: bytes) -> None:
        from feedwatch.normalize import normalize_feed
        from feedwatch.parse import ParseError, parse_feed

        self.iterations += 1
        headers = {"Content-Type": CONTENT_TYPES[data[0] % len(CONTENT_TYPES)]} if data else {}
        started = time.perf_counter()
        try:
            feed = parse_feed(data, headers=headers, url=URL)
            normalize_feed(feed, feed_url=URL, configured_language=None, fetched_at=datetime(2025, 1, 1))
        except ParseError:
            pass
        except Exception:  # exactly what the fuzzer hunts: record it, keep going
            self.crashes += 1
            self._save(data, traceback.format_exc())
        self.slowest_ms = max(self.slowest_ms, (time.perf_counter() - started) * 1000)

    def _save(self, data: bytes, trace: str) -> None:
        self.crash_dir.mkdir(parents=True, exist_ok=True)
        name = f"crash-{self.crashes:04d}"
        (self.crash_dir / f"{name}.bin").write_bytes(data)
        (self.crash_dir / f"{name}.txt").write_text(trace)

    def figures(self) -> dict[str, float | int]:
        return {
            "iterations": self.iterations,
            "crashes": self.crashes,
            "slowest_ms": round(self.slowest_ms, 1),
        }


def mutate(rng: random.Random, body: bytes, pool: list[bytes]) -> bytes:
    """A few deletions, replacements, duplications, token insertions, bit flips or a splice."""
    out = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        start = rng.randrange(len(out) + 1)
        end = min(len(out), start + rng.randint(0, 64))
        action = rng.randrange(6)
        if action == 0:
            del out[start:end]
        elif action == 1:
            out[start:end] = rng.randbytes(rng.randint(0, 32))
        elif action == 2:
            out[start:start] = out[start:end] * rng.randint(1, 50)
        elif action == 3:
            out[start:start] = rng.choice(TOKENS)
        elif action == 4 and out:
            out[min(start, len(out) - 1)] ^= 1 << rng.randrange(8)
        else:
            other = rng.choice(pool)
            out[start:] = other[rng.randrange(len(other) + 1) :]
    return bytes(out)


def run_mutation(target: Target, seconds: float, iterations: int, seed: int) -> None:
    rng = random.Random(seed)
    pool = seeds() or [b"<rss/>"]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (iterations <= 0 or target.iterations < iterations):
        target(mutate(rng, rng.choice(pool), pool))


def run_atheris(args: argparse.Namespace) -> dict[str, float | int]:
    """libFuzzer in a child process; the child reports through a stats file it rewrites."""
    work = Path(tempfile.mkdtemp(prefix="fw-fuzz-"))
    try:
        corpus = work / "corpus"
        corpus.mkdir()
        for i, body in enumerate(seeds()):
            (corpus / f"seed-{i:05d}").write_bytes(body)
        stats = work / "stats.json"
        cmd = [sys.executable, __file__, "--atheris-child", str(stats), "--crash-dir", str(args.crash_dir)]
        cmd += [f"-seed={args.seed}", f"-max_total_time={max(1, int(args.seconds))}", "-timeout=10"]
        cmd += ["-rss_limit_mb=2048", f"-runs={args.iterations or -1}", str(corpus)]
        child = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        figures = json.loads(stats.read_text()) if stats.exists() else {"iterations": 0, "crashes": 0}
        if child.returncode != 0:  # libFuzzer's own verdict: a timeout, an out-of-memory, a signal
            figures["crashes"] = int(figures.get("crashes", 0)) + 1
            figures["libfuzzer"] = child.stderr[-2000:]
        return figures
    finally:
        shutil.rmtree(work, ignore_errors=True)


def atheris_child(stats: Path, crash_dir: Path, libfuzzer_args: list[str]) -> None:
    import atheris  # type: ignore[import-untyped]

    with atheris.instrument_imports():
        import feedparser  # noqa: F401 - instrumented for coverage

        import feedwatch.jsonfeed
        import feedwatch.normalize
        import feedwatch.parse  # noqa: F401
    target = Target(crash_dir)
    last = [0.0]

    def one(data: bytes) -> None:
        target(data)
        now = time.monotonic()
        if now - last[0] > 0.2 or target.crashes:  # libFuzzer exits without returning to us
            stats.write_text(json.dumps(target.figures()))
            last[0] = now

    atheris.Setup([sys.argv[0], *libfuzzer_args], one)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--iterations", type=int, default=0, help="stop after N inputs (0: time only)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--engine", choices=("auto", "atheris", "mutation"), default="auto")
    parser.add_argument("--crash-dir", type=Path, default=REPO / "var" / "fuzz-crashes")
    parser.add_argument("--atheris-child", type=Path, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.atheris_child:
        atheris_child(args.atheris_child, args.crash_dir, rest)
        return
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if _has_atheris() else "mutation"
    started = time.monotonic()
    if engine == "atheris":
        figures = run_atheris(args)
    else:
        target = Target(args.crash_dir)
        run_mutation(target, args.seconds, args.iterations, args.seed)
        figures = target.figures()
    report = {"engine": engine, **figures, "seconds": round(time.monotonic() - started, 1)}
    print(json.dumps(report | {"seeds": len(seeds())}))


def _has_atheris() -> bool:
    import importlib.util

    return importlib.util.find_spec("atheris") is not None


if __name__ == "__main__":
    main()
