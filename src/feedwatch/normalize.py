"""Normalize stage: :class:`ParsedEntry` → :class:`ArticleDraft` ready to store. Pure.

Decisions, in the order an entry meets them:

* Identity: a guid that is an absolute http(s) URL is global (the same item in two feeds is one
  article) and shares its key space with canonical links; any other guid is scoped by the feed
  URL; no guid → the canonical link; neither → hash of feed URL, title and date.
* URL: absolute (resolved against the entry's base), http/https only, tracking parameters and
  fragment dropped, query canonicalized (w3lib) so equal links compare equal.
* Text: plain text from HTML, entities decoded (twice where clearly double-escaped), paragraph
  breaks kept as newlines, other white space collapsed. Title ≤ 1,000 characters, text ≤ 100 KB.
  The text is the longer of the entry's content and its summary (the teaser); the summary is
  kept (≤ 2,000 characters) only when it is not the text, and is empty otherwise.
* Language: entry, else feed, else configured, else detected on title + text. A poll batch
  detects the new entries of all its feeds together (``draft_feed``, then ``set_languages``: 64
  a call of the language model, which walks them 8 KB of text at a time, ``detect_languages``).
* Date: published, else updated, else the fetch time (``published_from_feed=False``); dates
  before 1990 or more than two days ahead of the fetch are bogus and fall back the same way.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import nh3
from w3lib.url import canonicalize_url

from feedwatch.parse import ParsedEntry, ParsedFeed
from feedwatch.textnorm import collapse_space, fold
from feedwatch.urls import DEFAULT_PORTS, kept_port

if TYPE_CHECKING:
    from feedwatch.langmodel import LanguageModel

MAX_TITLE_CHARS = 1_000
MAX_SUMMARY_CHARS = 2_000
MAX_TEXT_BYTES = 100_000
MIN_DATE = datetime(1990, 1, 1)
MAX_FUTURE = timedelta(days=2)
_DETECT_CHARS = 2_000  # enough for a stable guess; detection cost grows with length
#: Drafts a call of the language model (``set_languages``): from ~16 texts a call its cost is
#: spread thin (50 µs a farm text, against 75 in calls of two and 113 alone: round 31 in
#: docs/performance-history.md), and a poll batch's texts are not all copied at once.
_DETECT_BATCH = 64

_TRACKING_EXACT = frozenset(
    {"fbclid", "gclid", "dclid", "gbraid", "wbraid", "yclid", "msclkid", "mc_cid", "mc_eid",
     "ref", "ref_src", "ref_url", "igshid", "_ga", "_gl", "ocid", "cmpid", "smid", "wt_mc",
     "wt_zmc"}
)  # fmt: skip
_TRACKING_PREFIXES = ("utm_", "at_")  # at_*: AT Internet (at_medium, at_campaign, ...)

_BLOCK_TAG = re.compile(
    r"<\s*/?\s*(?:p|div|br|li|ul|ol|h[1-6]|tr|table|blockquote|section|article|hr|pre|dd|dt|"
    r"figure|figcaption|header|footer)\b[^>]*>",
    re.IGNORECASE,
)
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
_ASCII_CONTROLS = bytes(c for c in range(0x80) if _CONTROL.match(chr(c)))  # its ASCII characters
# Markup made only of these (phrasing) elements, their tags plainly written, is read without an
# HTML parser (``_inline_text``): html5ever's tree builder keeps the text of such elements in
# document order, whatever their nesting. Not here: elements whose content the parser reads
# differently (script, style, title, textarea, ...), tables (text moves out of them), foreign
# content (svg, math), comments and every other ``<``.
_INLINE = (
    "a|abbr|b|bdi|bdo|big|cite|code|data|del|dfn|em|font|i|img|ins|kbd|mark|nobr|q|s|samp|small|"
    "span|strike|strong|sub|sup|time|tt|u|var|wbr"
)
_SPACE_IN_TAG = "[ \t\n\f]"
# Possessive quantifiers throughout, and each part ends where the next cannot begin: giving back
# characters never finds another way to match, and trying them all would be exponential in the
# length of the text ("aaa…<script>" took seconds at 22 characters).
_ATTRIBUTE = (
    f"[A-Za-z_:][-A-Za-z0-9_:.]*+(?:{_SPACE_IN_TAG}*+={_SPACE_IN_TAG}*+"
    "(?:\"[^\"]*+\"|'[^']*+'|[^\\s\"'=<>`]++))?+"
)
_INLINE_TAG = re.compile(
    f"<(?:(?:{_INLINE})(?:{_SPACE_IN_TAG}++{_ATTRIBUTE})*+{_SPACE_IN_TAG}*+/?"
    f"|/(?:{_INLINE}){_SPACE_IN_TAG}*+)>",
    re.IGNORECASE,
)
_NUMERIC_REFERENCE = re.compile(r"&#(?:[xX]([0-9a-fA-F]+)|([0-9]+))")
# Code points whose numeric reference html.unescape drops where html5ever keeps the character:
# C0 controls, DEL and the noncharacters (CPython's ``html._invalid_codepoints`` without those
# its ``_invalid_charrefs`` maps; asked of html.unescape itself here).
_DROPPED = frozenset(
    code
    for code in (
        *range(0xA0),
        *range(0xFDD0, 0xFDF0),
        *(p | low for p in range(0, 0x110000, 0x10000) for low in (0xFFFE, 0xFFFF)),
    )
    if html.unescape(f"&#{code};") == ""
)
_ISO639_3 = {"rus": "ru", "eng": "en", "aze": "az", "hye": "hy", "arm": "hy", "deu": "de",
             "ger": "de", "fra": "fr", "fre": "fr", "ukr": "uk", "geo": "ka",
             "kat": "ka"}  # fmt: skip


@dataclass(slots=True)
class ArticleDraft:
    """A normalized entry, ready to store. Read-only once its language is set
    (:func:`normalize_feed`, :func:`set_languages`); not frozen because the languages are
    detected after the drafts are made, together, and set on them (``dataclasses.replace`` of a
    frozen draft cost ~3 µs an article)."""

    identity_key: str
    guid: str | None
    url: str | None
    title: str
    summary: str
    text: str
    author: str | None
    language: str | None
    published_at: datetime  # naive UTC
    published_from_feed: bool
    content_hash: str


#: A draft whose language is not detected yet, with the declared language (the detector's hint).
Undetected = tuple[ArticleDraft, str | None]


def normalize_feed(
    feed: ParsedFeed, *, feed_url: str, configured_language: str | None, fetched_at: datetime
) -> list[ArticleDraft]:
    """Every entry normalized, de-duplicated by identity key (first occurrence wins)."""
    drafts = draft_feed(
        feed, feed_url=feed_url, configured_language=configured_language, fetched_at=fetched_at
    )
    set_languages(drafts)
    return [draft for draft, _ in drafts]


def draft_feed(
    feed: ParsedFeed, *, feed_url: str, configured_language: str | None, fetched_at: datetime
) -> list[Undetected]:
    """:func:`normalize_feed` but for the languages: each draft with its hint, for
    :func:`set_languages`. A poll batch detects its feeds' languages together: a feed with two
    new items paid the model's cost a call alone (round 31 in docs/performance-history.md)."""
    feed_language = _language_code(feed.language) or _language_code(configured_language)
    drafts: dict[str, Undetected] = {}
    for entry in feed.entries:
        draft, hint = _draft(entry, feed_url=feed_url, feed_language=feed_language, fetched_at=fetched_at)
        drafts.setdefault(draft.identity_key, (draft, hint))
    return list(drafts.values())


def set_languages(drafts: Sequence[Undetected]) -> None:
    """Detect the drafts' languages and set them, :data:`_DETECT_BATCH` drafts a call of the model."""
    for start in range(0, len(drafts), _DETECT_BATCH):
        part = drafts[start : start + _DETECT_BATCH]
        # Only the first _DETECT_CHARS of title and text are read (detect_languages): the text's
        # rest is not copied.
        texts = [f"{draft.title}\n{draft.text[:_DETECT_CHARS]}" for draft, _ in part]
        for (draft, _), language in zip(part, detect_languages(texts, [h for _, h in part]), strict=True):
            draft.language = language


def normalize_entry(
    entry: ParsedEntry, *, feed_url: str, feed_language: str | None, fetched_at: datetime
) -> ArticleDraft:
    """One entry as a draft article (see the module docstring for each decision)."""
    draft, hint = _draft(entry, feed_url=feed_url, feed_language=feed_language, fetched_at=fetched_at)
    draft.language = detect_language(f"{draft.title}\n{draft.text}", hint=hint)
    return draft


def _draft(
    entry: ParsedEntry, *, feed_url: str, feed_language: str | None, fetched_at: datetime
) -> tuple[ArticleDraft, str | None]:
    """The draft without its language, and the declared language (the hint for detection)."""
    base = entry.base or feed_url
    url = canonical_url(entry.link, base) if entry.link else None
    title = _single_line(html_to_text(entry.title))[:MAX_TITLE_CHARS]
    summary = html_to_text(entry.summary_html)
    text = _cap_bytes(max(html_to_text(entry.content_html), summary, key=len), MAX_TEXT_BYTES)
    published_at, from_feed = _published(entry, fetched_at)
    # The declared language (entry, else feed, else configuration) is a hint, not the truth:
    # multilingual outlets declare one language for everything. It wins only where the
    # detector is unsure (short or mixed text).
    hint = _language_code(entry.language) or _language_code(feed_language)
    draft = ArticleDraft(
        identity_key=_identity_key(entry.guid, url, feed_url, title, published_at, from_feed),
        # PostgreSQL's text cannot hold NUL: the stored guid drops it (its key keeps the guid as
        # given). The texts lose it in html_to_text, the URL is percent-encoded.
        guid=entry.guid.replace("\x00", "") if entry.guid else entry.guid,
        url=url,
        title=title,
        # The teaser is kept when the text is something else (the entry's content). When it is
        # the text (98.6 % of the shared corpus's real entries), it is not stored twice: it was
        # ~40 % of an article's stored text, and its copy cost the worker's JSON encoding,
        # PostgreSQL's JSON parsing, WAL and table pages (round 25 in docs/performance.md).
        summary="" if summary == text else summary[:MAX_SUMMARY_CHARS],
        text=text,
        author=_author(entry.author) if entry.author else None,
        language=None,
        published_at=published_at,
        published_from_feed=from_feed,
        content_hash=_sha256(fold(f"{title}\n{text}")),
    )
    return draft, hint


def entry_identity_key(entry: ParsedEntry, *, feed_url: str) -> str | None:
    """The identity key :func:`normalize_entry` gives ``entry`` when its guid or link decides it,
    computed without the text (so a poll can skip normalizing items it stored before); None
    when the key depends on the title and date."""
    url = canonical_url(entry.link, entry.base or feed_url) if entry.link else None
    if not entry.guid and not url:
        return None
    return _identity_key(entry.guid, url, feed_url, "", datetime.min, False)


def _identity_key(
    guid: str | None, url: str | None, feed_url: str, title: str, date: datetime, dated: bool
) -> str:
    if guid:
        global_url = canonical_url(guid) if _is_absolute_http(guid) else None
        # Same "url:" space as links: a feed with guid=permalink and one with only the link agree.
        return _sha256(f"url:{global_url}" if global_url else f"guid:{feed_url}\n{guid}")
    if url:
        return _sha256(f"url:{url}")
    return _sha256(f"item:{feed_url}\n{title}\n{date.isoformat() if dated else ''}")


def canonical_url(url: str, base: str | None = None) -> str | None:
    """Absolute http(s) URL without tracking parameters and fragment; None if not http(s).

    A URL already in canonical form (lower-case http(s) scheme and host name, a port other than
    the scheme's, a path of unreserved characters with no dot or empty segment, no query,
    credentials or fragment: most feed links) is returned as it is, which is what the full
    canonicalization returns for it (tests/unit/test_canonical_url.py holds the two equal).
    Others are cached: a feed re-polled after a change shows mostly the links it showed last
    time, and w3lib's canonicalization (~20-40 µs) was a tenth of a poll batch's CPU."""
    plain = _PLAIN_URL.fullmatch(url)
    if plain and kept_port(plain["scheme"], plain["port"]) is not None and _named_or_quad(plain["host"]):
        return url
    return _canonical_url(url, base)


_PLAIN_URL = re.compile(
    r"(?P<scheme>https?)://(?P<host>(?:[a-z0-9-]{1,63}\.)*[a-z0-9-]{1,63})(?::(?P<port>[1-9][0-9]{0,4}))?"
    r"/(?:[A-Za-z0-9_~-][A-Za-z0-9._~-]*(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*/?)?"
)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_QUAD = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")


def _named_or_quad(host: str) -> bool:
    """Whether the full canonicalization leaves ``host`` as it is: a name, or an IPv4 address
    already written as four decimal octets. A host whose last label is a number (``0``,
    ``127.1``, ``0x7f.1``) is an IPv4 address to the WHATWG URL standard, which w3lib follows
    since 2.6 and rewrites it (``http://0/`` is ``http://0.0.0.0/``) or refuses it."""
    last = host.rpartition(".")[2]
    if not (last.isdigit() or last.startswith("0x")):
        return True
    return _DOTTED_QUAD.fullmatch(host) is not None


@lru_cache(maxsize=32_768)
def _canonical_url(url: str, base: str | None) -> str | None:
    url = url.strip()
    try:
        if base:
            url = urljoin(base.strip(), url)
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            return None
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if _keep(k)]
        url = urlunsplit(parts._replace(netloc=_netloc(parts), query=urlencode(query), fragment=""))
        return str(canonicalize_url(url))
    # urlsplit rejects malformed IPv6 hosts and ports with ValueError; such a link is unusable.
    except ValueError:
        return None


def _netloc(parts: SplitResult) -> str:
    """Host and non-default port; credentials are dropped (never stored, never shown)."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port  # ValueError on a bad port, handled by the caller
    return f"{host}:{port}" if port is not None and port != DEFAULT_PORTS[parts.scheme.lower()] else host


def _keep(param: str) -> bool:
    name = param.lower()
    return name not in _TRACKING_EXACT and not name.startswith(_TRACKING_PREFIXES)


def _is_absolute_http(value: str) -> bool:
    return value.lower().startswith(("http://", "https://"))


def html_to_text(html_text: str) -> str:
    """Plain text of an HTML fragment: tags dropped, entities decoded, paragraphs as newlines."""
    if not html_text:
        return ""
    if "<" in html_text or "&" in html_text:
        marked = _BLOCK_TAG.sub("\n", html_text)
        text = _inline_text(marked)
        if text is None:
            # nh3 (ammonia) drops every tag, comments and script/style bodies; returns escaped text.
            text = html.unescape(nh3.clean(marked, tags=set()))
        if "&" in text:
            # Still an entity after one decoding: the feed escaped twice (&amp;amp;).
            text = _ENTITY.sub(lambda m: html.unescape(m.group(0)), text)
    else:
        text = html_text
    return collapse_space(_drop_controls(text))


def _drop_controls(text: str) -> str:
    """``text`` without what :data:`_CONTROL` matches. An ASCII text's controls are deleted by
    ``bytes.translate``, a table lookup a byte, where the regular expression's scan tests its
    set of characters at every position (~10 ns a character: 5-10 µs an entry's text)."""
    if text.isascii():
        data = text.encode("ascii")
        kept = data.translate(None, _ASCII_CONTROLS)
        return text if len(kept) == len(data) else kept.decode("ascii")
    return _CONTROL.sub("", text)


def _inline_text(marked: str) -> str | None:
    """What nh3 leaves of ``marked`` (tags dropped, character references decoded), when its only
    markup is inline elements (``_INLINE_TAG``); None otherwise, for nh3 to read.

    Most feed HTML is this once the block tags are newlines (``<a>``, ``<strong>``, ``<img>``),
    and cutting at the tags costs about a third of nh3's parse and serialization (the benchmark
    farm's teasers 9.4 → 3.5 µs). The same answer, as html5ever reads it: its input's line breaks
    normalized (CR LF and CR become LF), each run of text between two tags decoded on its own
    (a reference is never split by a tag), references decoded by the HTML5 rules (which
    ``html.unescape`` implements, but for the references it drops: those are left to nh3), a
    NUL ending a reference and then dropped. tests/unit/test_normalize.py holds the two equal
    on generated markup."""
    # The text between the inline tags; a "<" left in it is some other markup. (At a given "<"
    # the tag pattern matches one way or not at all, so these are the only possible runs.)
    runs = _INLINE_TAG.split(marked)
    if any("<" in run for run in runs) or ("&#" in marked and _odd_number(marked)):
        return None
    if "\r" in marked:  # the tags are dropped: only the runs' line breaks become LF
        runs = [run.replace("\r\n", "\n").replace("\r", "\n") for run in runs]
    return "".join(map(_decode, runs) if "&" in marked else runs)


def _odd_number(text: str) -> bool:
    """Whether ``text`` holds a numeric reference this reading would get wrong: one html.unescape
    drops and html5ever keeps (``&#1;``, ``&#xFDD0;``: :data:`_DROPPED`; what is left of the
    text around it can differ, ``&am&#1;p;``), or one of more than 16 digits (html.unescape
    converts any number of decimal digits to an integer, and Python refuses past 4,300)."""
    for found in _NUMERIC_REFERENCE.finditer(text):
        digits, base = (found[1], 16) if found[1] else (found[2], 10)
        if len(digits) > 16 or int(digits, base) in _DROPPED:
            return True
    return False


def _decode(run: str) -> str:
    """A run of text with its references decoded as html5ever decodes them: a NUL ends a
    reference ("&#\x001;" is "&#" and "1;"), and the tree drops the NUL."""
    if "\x00" in run:
        return "".join(map(html.unescape, run.split("\x00")))
    return html.unescape(run)


def _single_line(text: str) -> str:
    return " ".join(text.split())


@lru_cache(maxsize=256)
def _author(raw: str) -> str | None:
    """An entry's author as stored: a feed names the same few authors item after item (the
    benchmark farm's one, a desk), so their text is worked out once: ~0.1 µs a hit against
    ~2 µs for ``html_to_text`` of a short name."""
    return _single_line(html_to_text(raw)) or None


def _cap_bytes(text: str, limit: int) -> str:
    if len(text) * 4 <= limit:  # fast path: no UTF-8 character is longer than 4 bytes
        return text
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def _published(entry: ParsedEntry, fetched_at: datetime) -> tuple[datetime, bool]:
    fetched = _naive_utc(fetched_at)
    for value in (entry.published, entry.updated):
        if value is not None:
            date = _naive_utc(value)
            if MIN_DATE <= date <= fetched + MAX_FUTURE:
                return date, True
    return fetched, False


def _naive_utc(value: datetime) -> datetime:
    """Naive UTC, the draft's form; a naive input is taken to be UTC already. A value in
    ``datetime.UTC`` (every date the parse gives, and the poll's clock) only drops its zone."""
    if value.tzinfo is None:
        return value
    return value.replace(tzinfo=None) if value.tzinfo is UTC else value.astimezone(UTC).replace(tzinfo=None)


def _language_code(value: str | None) -> str | None:
    """ISO 639-1 from a feed's language tag ("ru-RU", "en_us", "rus"); None if unusable."""
    return _language_tag(value) if value else None


@lru_cache(maxsize=256)
def _language_tag(value: str) -> str | None:
    """:func:`_language_code` of a tag: asked three times an entry (the entry's tag, the feed's,
    the hint at detection), of the few tags feeds use."""
    primary = value.strip().replace("_", "-").split("-")[0].lower()
    if len(primary) == 2 and primary.isascii() and primary.isalpha():
        return primary
    return _ISO639_3.get(primary)


def detect_language(text: str, hint: str | None = None) -> str | None:
    """Detected ISO 639-1 language of ``text``; ``hint`` wins when the detector is unsure."""
    return detect_languages([text], [hint])[0]


def detect_languages(texts: Sequence[str], hints: Sequence[str | None]) -> list[str | None]:
    """``[detect_language(text, hint) ...]`` for many texts: the model walks them together, 8 KB
    of text at a time, which costs about a quarter of walking them one by one (the farm's
    teasers: 40 against 145 µs a text; feedwatch.langmodel)."""
    samples = [text[:_DETECT_CHARS].strip() for text in texts]
    asked = [i for i, sample in enumerate(samples) if len(sample) >= 3 and any(c.isalpha() for c in sample)]
    answers = dict(zip(asked, _identifier().classify_many([samples[i] for i in asked]), strict=True))
    return [
        _decide(sample, _language_code(hint), answers.get(i))
        for i, (sample, hint) in enumerate(zip(samples, hints, strict=True))
    ]


def _decide(sample: str, hinted: str | None, answer: tuple[str, float] | None) -> str | None:
    if answer is None:  # too short, or no letter
        return hinted
    lang, confidence = answer
    if lang == "tr" and "ə" in sample.lower():
        # langid confuses Azerbaijani with Turkish; the schwa is written only in Azerbaijani.
        lang = "az"
    if hinted and confidence < 0.5:
        return hinted
    return str(lang) if lang != "und" else hinted


def warm_up() -> None:
    """Load the language model now (~34 MB, 0.5 s) rather than on the first entry.

    A Celery parent calls this before it forks its pool, so the children share the model's pages
    copy-on-write instead of each loading a private copy (workers/app.py).
    """
    _identifier()


@cache
def _identifier() -> LanguageModel:
    """The langid model, loaded once per process on first use (it takes ~0.5 s).

    py3langid's model in a compact form that answers exactly what its ``LanguageIdentifier``
    (``norm_probs=True``) answers, in ~30 MB instead of ~70 MB (feedwatch.langmodel).
    """
    from feedwatch.langmodel import LanguageModel

    # The model also knows ISO 639-3-only varieties (pcm, gcf, crh, ...) that steal short English
    # or Azerbaijani titles and cannot be stored as ISO 639-1: restrict it to two-letter codes.
    return LanguageModel.from_py3langid(keep=lambda code: len(code) == 2)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()
