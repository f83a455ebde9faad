"""Full-text extraction throughput: article pages per second on one core. Prints JSON.

Pages are tests/support/article_pages.py's stories (en, ru, az, hy) padded the way real news
pages are: ~8 story paragraphs, a 400-link mega-menu, a 60 KB inline script bundle, JSON-LD,
a 40-item "most read" block and 30 comments, about 120 KB of HTML each (news sites serve
50–300 KB). Timing covers decoding, trafilatura (or the fallback), and language detection:
everything ``feedwatch.extract.extract`` does. Also: the paragraph fallback alone, and one
2 MB page (the default ``FEEDWATCH_ARTICLE_MAX_BYTES``) with the 5 s time limit.

    .venv/bin/python benchmarks/extract_bench.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.article_pages import STORIES, Story, render

from feedwatch.extract import decode_html, extract, paragraphs


def realistic(story: Story, filler: int = 5) -> bytes:
    page = render(story, filler_paragraphs=filler).decode(story.charset)
    menu = "".join(f'<li><a href="/section/{i}">Section {i}</a></li>' for i in range(400))
    script = "<script>" + "var x=function(a,b){return a+b};" * 2000 + "</script>"
    ld = '<script type="application/ld+json">{"@type":"NewsArticle","headline":"x"}</script>'
    most_read = "".join(
        f'<li><a href="/r/{i}">Most read story number {i} of today</a></li>' for i in range(40)
    )
    comments = "".join(
        f'<div class="comment"><p>Comment {i}: I have been reading this site for years and '
        f"this is the best piece so far, thank you for writing it.</p></div>"
        for i in range(30)
    )
    page = page.replace("<nav><ul>", f"<nav><ul>{menu}", 1).replace("</head>", f"{ld}{script}</head>", 1)
    page = page.replace("</aside>", f"<ul>{most_read}</ul></aside>", 1)
    page = page.replace('<section id="comments" class="comments">', f'<section id="comments">{comments}', 1)
    return page.encode(story.charset)


def rate(fn: Callable[[], object], seconds: float) -> tuple[float, int]:
    fn()  # warm-up: imports, langid model
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start), n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    pages = [realistic(s) for s in STORIES]
    sizes = [len(p) for p in pages]
    i = 0

    def one() -> None:
        nonlocal i
        extract(pages[i % len(pages)], "https://example.org/a", content_type="text/html", time_limit=5)
        i += 1

    html = [decode_html(p, "text/html") for p in pages]

    def fallback() -> None:
        nonlocal i
        paragraphs(html[i % len(html)])
        i += 1

    pps, n = rate(one, args.seconds)
    fb, _ = rate(fallback, args.seconds / 2)
    huge = realistic(STORIES[0], filler=0)
    # The story first, then ~2 MB of small blocks (an endless comment thread): the worst shape
    # for trafilatura, which scores every block.
    huge = huge.replace(
        b"</article>", b"</article>" + b"<div><p>padding text</p></div>" * (2_000_000 // 30), 1
    )
    huge = huge[: 2 * 1024 * 1024 - 200] + b"</main></body></html>"
    start = time.perf_counter()
    found = extract(huge, None, content_type="text/html", time_limit=5)
    huge_s = time.perf_counter() - start
    print(
        json.dumps(
            {
                "benchmark": "extract",
                "cores_used": 1,
                "cpu_count": os.cpu_count(),
                "page_bytes_mean": round(sum(sizes) / len(sizes)),
                "pages_timed": n,
                "pages_per_second_per_core": round(pps, 1),
                "ms_per_page": round(1000 / pps, 2),
                "fallback_pages_per_second_per_core": round(fb, 1),
                "page_2mb_seconds": round(huge_s, 2),
                "page_2mb_method": found.method,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
