"""Per-article normalization costs: language detection and canonical_url, old against new, one run.

    .venv/bin/python benchmarks/lang_bench.py [--rounds 5]

Prints one JSON object. Texts are what ``normalize_feed`` detects on (title + text, with the
feed's hint) for the farm's 50-item feeds (``benchmarks/farm.py``) and, when ``../shared`` is
present, for every real feed of the shared corpus; URLs are their entries' links and guids.

* ``detect``: µs per text for the old way (a copy of the old ``LanguageModel.classify`` under the
  same rules, one text at a time), ``detect_language`` one text at a time, and
  ``detect_languages`` one feed's texts at a time (what ``normalize_feed`` does).
* ``canonical_url``: µs per URL for the old function (the full canonicalization, uncached:
  ``normalize._canonical_url.__wrapped__``, w3lib on every URL, as a first sight of a link is:
  ingest with all items new misses the cache) and the new one with its cache cleared each round.

Rounds alternate old and new; ratios are medians of per-round ratios (old ÷ new). Every answer is
also compared: ``same`` counts the texts and URLs whose new answer equals the old one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import unicodedata
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import farm

from feedwatch import normalize
from feedwatch.parse import ParsedFeed, ParseError, parse_feed

SHARED = Path(__file__).resolve().parents[2] / "shared" / "corpus"
FETCHED = datetime(2025, 9, 1, 12, 0)
Feed = tuple[list[str], list[str | None], list[tuple[str, str | None]]]  # texts, hints, (url, base)


#: canonical_url before its fast path, uncached: the full canonicalization it still falls back to.
old_canonical_url = normalize._canonical_url.__wrapped__


def old_detector() -> Callable[[str, str | None], str | None]:
    """detect_language as it was: the same rules over a copy of the old ``LanguageModel.classify``
    (py3langid's byte loop and Counter, ``LanguageModel._visits``; numpy's float16 cast)."""
    model = normalize._identifier()

    def classify(text: str) -> tuple[str, float]:
        if text.isupper():
            text = text.lower()
        data = unicodedata.normalize("NFC", text).encode("utf8", errors="surrogatepass")
        visits = model._visits(data)  # the byte loop, unchanged: what the old classify called
        if visits:
            idx = np.fromiter(visits.keys(), dtype=np.intp, count=len(visits))
            counts = np.fromiter(visits.values(), dtype=np.float32, count=len(visits))
            scores = np.log1p(counts) @ model._ptc[idx] + model._pc
        else:
            scores = np.full(len(model.classes), 0.0, dtype=np.float32)
        scores *= 1.0 / math.sqrt(len(data) or 1)
        np.exp(scores - scores.max(), out=scores)
        scores /= scores.sum()
        for i, j in model._alias_pairs:
            scores[i] += scores[j]
            scores[j] = 0.0
        best = int(scores.argmax())
        return model.classes[best], float(scores[best])

    def detect(text: str, hint: str | None = None) -> str | None:
        sample = text[: normalize._DETECT_CHARS].strip()
        hinted = normalize._language_code(hint)
        if len(sample) < 3 or not any(c.isalpha() for c in sample):
            return hinted
        return normalize._decide(sample, hinted, classify(sample))

    return detect


def feeds() -> dict[str, list[Feed]]:
    """Per source, per feed: the detection texts and hints, and the (link or guid, base) pairs."""

    def of(feed: ParsedFeed, url: str, language: str | None) -> Feed:
        feed_language = normalize._language_code(feed.language) or normalize._language_code(language)
        texts: list[str] = []
        hints: list[str | None] = []
        urls: list[tuple[str, str | None]] = []
        for entry in feed.entries:
            draft, hint = normalize._draft(
                entry, feed_url=url, feed_language=feed_language, fetched_at=FETCHED
            )
            texts.append(f"{draft.title}\n{draft.text}")
            hints.append(hint)
            # As the pipeline asks: the link against its base, a guid only when it is an http(s) URL.
            if entry.link:
                urls.append((entry.link, entry.base or url))
            if entry.guid and normalize._is_absolute_http(entry.guid):
                urls.append((entry.guid, None))
        return texts, hints, urls

    group = farm.Group(name="ingest", feeds=20, mix={"new": 1.0})
    found = {
        "farm": [
            of(parse_feed(farm.render_feed(group, i, i * 50, 8080), headers={}, url=u), u, "en")
            for i in range(20)
            for u in [f"http://127.0.0.1:8080/ingest/{i}.xml"]
        ]
    }
    if SHARED.is_dir():
        real = []
        for path in sorted((SHARED / "feeds").glob("*.xml")):
            url = f"https://corpus.example/{path.name}"
            try:
                real.append(of(parse_feed(path.read_bytes(), headers={}, url=url), url, None))
            except ParseError:
                continue
        found["real"] = real
    return found


def timed(work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def measure(source: list[Feed], rounds: int, old_detect: Any) -> dict[str, Any]:
    texts = [(t, h) for texts, hints, _ in source for t, h in zip(texts, hints, strict=True)]
    urls = [pair for _, _, pairs in source for pair in pairs]
    same_detect = sum(
        old_detect(t, h) == normalize.detect_language(t, h) == new
        for (t, h), new in zip(
            texts, [x for ts, hs, _ in source for x in normalize.detect_languages(ts, hs)], strict=True
        )
    )
    same_url = sum(old_canonical_url(u, b) == normalize.canonical_url(u, b) for u, b in urls)
    times: dict[str, list[float]] = {k: [] for k in ("old", "single", "batch", "url_old", "url_new")}
    for _ in range(rounds):
        times["old"].append(timed(lambda: [old_detect(t, h) for t, h in texts]))
        times["single"].append(timed(lambda: [normalize.detect_language(t, h) for t, h in texts]))
        times["batch"].append(timed(lambda: [normalize.detect_languages(ts, hs) for ts, hs, _ in source]))
        times["url_old"].append(timed(lambda: [old_canonical_url(u, b) for u, b in urls]))
        normalize._canonical_url.cache_clear()
        times["url_new"].append(timed(lambda: [normalize.canonical_url(u, b) for u, b in urls]))

    def us(key: str, n: int) -> float:
        return round(statistics.median(times[key]) / n * 1e6, 1)

    def ratio(old: str, new: str) -> float:
        return round(statistics.median(o / n for o, n in zip(times[old], times[new], strict=True)), 2)

    return {
        "feeds": len(source),
        "texts": len(texts),
        "mean_text_chars": round(statistics.mean(len(t) for t, _ in texts)),
        "detect_us_per_text": {
            "old": us("old", len(texts)),
            "single": us("single", len(texts)),
            "batch_per_feed": us("batch", len(texts)),
        },
        "detect_ratio_old_over": {"single": ratio("old", "single"), "batch_per_feed": ratio("old", "batch")},
        "detect_same": f"{same_detect}/{len(texts)}",
        "urls": len(urls),
        "canonical_url_us": {"old": us("url_old", len(urls)), "new_cold_cache": us("url_new", len(urls))},
        "canonical_url_ratio_old_over_new": ratio("url_old", "url_new"),
        "canonical_url_same": f"{same_url}/{len(urls)}",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    normalize.warm_up()
    old_detect = old_detector()
    result: dict[str, Any] = {"rounds": args.rounds, "loadavg": [round(x, 2) for x in os.getloadavg()]}
    for name, source in feeds().items():
        result[name] = measure(source, args.rounds, old_detect)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
