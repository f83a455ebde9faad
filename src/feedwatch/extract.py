"""Extract stage: an article page (bytes + URL) → its main text and metadata. Pure: no network.

Most feeds carry a title and a one-line teaser; the sentence that makes a story relevant is
often in paragraph three. This module turns the fetched page into the story's text, the way
Media Cloud and Miniflux do:

1. Decode: BOM, then the HTTP ``Content-Type`` charset, then ``<meta charset>``, then UTF-8 if
   the bytes are valid UTF-8, then a guess from the bytes and the URL's top-level domain (w3lib's
   browser-like order, as Firefox does, since w3lib 2.6). Bodies that are not HTML
   (JSON, PDF, images…) fail as ``not_html``.
2. trafilatura first (main-text detection with its own readability/jusText fallbacks; comments,
   navigation, ads and tables dropped), with the page's title, author and date.
3. Where trafilatura fails, raises, runs out of time or finds less than ``MIN_CHARS``, a plain
   paragraph extraction takes over: the ``<p>`` text of ``<article>`` (else of the page) outside
   navigation, headers, footers, asides, forms and anything named like comments or ads. The
   longer of the two wins.
4. Language is detected on the extracted text; the page's ``<html lang>`` (else the caller's
   hint, the feed's language) only breaks ties when the detector is unsure.

Bounded cost: the input is cut at ``max_chars`` before parsing, and :func:`extract` gives
trafilatura ``time_limit`` seconds (a ``SIGALRM`` timer, only on the main thread, which is
where Celery's prefork children run tasks) before falling back. Failures are
:class:`ExtractionError` with a class operators can act on (``not_html``, ``empty``).
"""

from __future__ import annotations

import logging
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal

import lxml.html
from lxml import etree
from w3lib.encoding import html_to_unicode

from feedwatch.normalize import detect_language
from feedwatch.textnorm import collapse_space

ExtractErrorClass = Literal["not_html", "empty"]

#: Below this many characters trafilatura's answer is treated as a miss and the fallback runs too.
MIN_CHARS: Final = 200
#: Less text than this is a menu or a caption, not a story: the page fails as ``empty``.
MIN_STORY_CHARS: Final = 50
MAX_TEXT_BYTES: Final = 100_000  # the same cap as an article's feed text (normalize)
DEFAULT_MAX_CHARS: Final = 2_000_000
_MIN_PARAGRAPH: Final = 30

_HTML_TYPES: Final = ("text/html", "application/xhtml+xml", "text/xml", "application/xml", "")
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)
_SPACE = re.compile(r"[^\S\n]+")
# Boilerplate containers: dropped whole by the fallback before it reads paragraphs.
_DROP_TAGS: Final = ("script", "style", "noscript", "nav", "header", "footer", "aside", "form",
                     "iframe", "template", "svg", "button", "select")  # fmt: skip
_BOILERPLATE = re.compile(
    r"comment|disqus|sidebar|\bad\b|ads|advert|promo|sponsor|related|share|social|newsletter|"
    r"subscribe|cookie|banner|menu|breadcrumb|footer|nav",
    re.IGNORECASE,
)

# trafilatura logs every page it cannot handle at ERROR; our caller logs one classified line.
logging.getLogger("trafilatura").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class ExtractedText:
    text: str
    title: str | None
    language: str | None
    author: str | None
    date: str | None  # ISO date as the page states it (day precision), not trusted as a clock
    method: str  # "trafilatura" or "fallback"
    note: str | None = None  # why the fallback ran, when it did


class ExtractionError(Exception):
    """The page yielded no story text; ``error_class`` is ``not_html`` or ``empty``."""

    def __init__(self, error_class: ExtractErrorClass, message: str) -> None:
        super().__init__(f"{error_class}: {message}")
        self.error_class: ExtractErrorClass = error_class
        self.message = message


class _OutOfTime(BaseException):
    """Raised by the timer inside trafilatura; a BaseException so no ``except Exception`` in a
    library swallows it."""


def extract(
    body: bytes,
    url: str | None = None,
    *,
    content_type: str | None = None,
    language_hint: str | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
    time_limit: float | None = None,
) -> ExtractedText:
    """The main text of an article page; raises :class:`ExtractionError` when there is none."""
    html = decode_html(body, content_type, url)[:max_chars]
    declared = _page_language(html)
    note: str | None = None
    found: dict[str, Any] | None = None
    try:
        with _time_limit(time_limit):
            found = _trafilatura(html, url)
    except _OutOfTime:
        note = f"trafilatura over {time_limit:g}s"
    except Exception as exc:  # noqa: BLE001 - a library bug on one page must not fail the article
        note = f"trafilatura {type(exc).__name__}: {str(exc)[:200]}"
    text, method = (found or {}).get("text") or "", "trafilatura"
    if len(text) < MIN_CHARS:
        fallback = paragraphs(html)
        if len(fallback) > len(text):
            text, method = fallback, "fallback"
            note = note or ("trafilatura found nothing" if not found else "trafilatura text too short")
    text = _cap(collapse_space(text), MAX_TEXT_BYTES)
    if len(text) < MIN_STORY_CHARS:
        raise ExtractionError("empty", f"{len(text)} characters of text ({note or 'no paragraphs'})")
    meta = found or {}
    return ExtractedText(
        text=text,
        title=collapse_space(meta.get("title") or "") or _html_title(html),
        language=detect_language(text, hint=declared or language_hint),
        author=collapse_space(meta.get("author") or "") or None,
        date=meta.get("date") or None,
        method=method,
        note=note if method == "fallback" else None,
    )


def decode_html(body: bytes, content_type: str | None, url: str | None = None) -> str:
    """The page as text, decoded the way a browser would (``url`` informs the last guess: a
    ``.ru`` page without a declared charset is likelier windows-1251); ``not_html`` for other
    media."""
    mtype = (content_type or "").split(";", 1)[0].strip().lower()
    if mtype not in _HTML_TYPES:
        raise ExtractionError("not_html", f"content-type {mtype!r}")
    _, text = html_to_unicode(content_type, body, url=url)
    head = text[:2048].lstrip().lower()
    if not head.startswith("<") or "\x00" in head:
        raise ExtractionError("not_html", "the body does not start with markup")
    # lxml refuses str input that carries its own encoding declaration; it is decoded already.
    return str(_XML_DECL.sub("", text, count=1))


def _trafilatura(html: str, url: str | None) -> dict[str, Any] | None:
    import trafilatura

    doc = trafilatura.bare_extraction(
        html,
        url=url,
        with_metadata=True,
        include_comments=False,
        include_tables=False,
        include_images=False,
        include_links=False,
        deduplicate=False,
    )
    if doc is None:
        return None
    return doc if isinstance(doc, dict) else doc.as_dict()


def paragraphs(html: str) -> str:
    """The fallback: ``<p>`` text of ``<article>`` (else the page) outside boilerplate."""
    try:
        root = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        return ""
    for element in list(root.iter(*_DROP_TAGS)):
        _drop(element)
    for element in list(root.iter()):
        if not isinstance(element.tag, str):  # comments, processing instructions
            _drop(element)
            continue
        names = f"{element.get('class') or ''} {element.get('id') or ''}"
        if element.tag not in ("html", "body", "article", "main") and _BOILERPLATE.search(names):
            _drop(element)
    scope = next((e for e in (root.find(".//article"), root.find(".//main")) if e is not None), root)
    texts = (_SPACE.sub(" ", p.text_content()).strip() for p in scope.iter("p"))
    return "\n".join(t for t in texts if len(t) >= _MIN_PARAGRAPH)


def _drop(element: Any) -> None:
    parent = element.getparent()
    if parent is not None:
        parent.remove(element)


def _page_language(html: str) -> str | None:
    match = re.search(r"<html[^>]*\blang\s*=\s*[\"']?([A-Za-z]{2,3})", html[:4096], re.IGNORECASE)
    return match.group(1).lower() if match else None


def _html_title(html: str) -> str | None:
    match = re.search(r"<title[^>]*>(.*?)</title>", html[:65536], re.IGNORECASE | re.DOTALL)
    if not match:
        return None
    return collapse_space(lxml.html.fromstring(f"<p>{match.group(1)}</p>").text_content()) or None


def _cap(text: str, limit: int) -> str:
    if len(text) * 4 <= limit:
        return text
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


@contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`_OutOfTime` in the block after ``seconds`` (main thread only; elsewhere
    the input cap is the only bound). The previous SIGALRM handler and timer are restored."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(_signum: int, _frame: Any) -> None:
        raise _OutOfTime

    previous = signal.signal(signal.SIGALRM, expire)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:  # someone else's timer was running: give it back (minus nothing, roughly)
            signal.setitimer(signal.ITIMER_REAL, outer)
