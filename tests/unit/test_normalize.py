"""normalize_entry / normalize_feed and their helpers, table-driven."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from feedwatch import normalize
from feedwatch.normalize import (
    ArticleDraft,
    _single_line,
    canonical_url,
    detect_language,
    entry_identity_key,
    html_to_text,
    normalize_entry,
    normalize_feed,
)
from feedwatch.parse import ParsedEntry, parse_feed
from feedwatch.textnorm import collapse_space, fold

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "feeds"
FEED_URL = "https://feed.example.net/rss"
FETCHED = datetime(2025, 8, 20, 12, 0)


def drafts(name: str, configured_language: str | None = None) -> list[ArticleDraft]:
    feed = parse_feed((FIXTURES / name).read_bytes(), headers={}, url=FEED_URL)
    return normalize_feed(
        feed, feed_url=FEED_URL, configured_language=configured_language, fetched_at=FETCHED
    )


ENTRY = ParsedEntry(
    guid=None, link=None, title="", summary_html="", content_html="", author=None,
    published=None, updated=None, language=None, base=None,
)  # fmt: skip


@pytest.mark.parametrize(
    ("url", "base", "expected"),
    [
        ("https://a.example/x?utm_source=rss&utm_medium=x&id=7#c", None, "https://a.example/x?id=7"),
        ("https://a.example/x?fbclid=1&gclid=2&yclid=3&mc_cid=4&mc_eid=5", None, "https://a.example/x"),
        (
            "https://a.example/x?ref=rss&ref_src=twsrc&at_medium=RSS&at_campaign=K",
            None,
            "https://a.example/x",
        ),
        ("/news/1?b=2&a=1", "https://rel.example.com/feed", "https://rel.example.com/news/1?a=1&b=2"),
        ("posts/1", "https://atom.example.org/blog/", "https://atom.example.org/blog/posts/1"),
        ("  https://ws.example/a  ", None, "https://ws.example/a"),
        ("HTTPS://User:pw@Host.Example:443/P", None, "https://host.example/P"),
        ("http://host.example:8080/p", None, "http://host.example:8080/p"),
        ("javascript:alert(1)", "https://a.example/", None),
        ("mailto:x@example.com", None, None),
        ("ftp://a.example/file", None, None),
        ("/relative/without/base", None, None),
        ("http://[::1/x", None, None),
        ("http://a.example:99999/", None, None),
    ],
)
def test_canonical_url(url: str, base: str | None, expected: str | None) -> None:
    assert canonical_url(url, base) == expected


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("", ""),
        ("plain text", "plain text"),
        ("<p>One</p><p>Two</p>", "One\nTwo"),
        ("a<br>b<br/>c", "a\nb\nc"),
        ("x<script>alert(1)</script>y<style>p{}</style>", "xy"),
        ("Caf&eacute;&nbsp;au&amp;lait", "Café au&lait"),
        ("Tom &amp;amp; Jerry", "Tom & Jerry"),  # double-escaped
        ("&amp;#8217;s", "\u2019s"),
        ("5 < 6 & 7 > 3", "5 < 6 & 7 > 3"),
        ("  many   \t spaces \n\n\n lines ", "many spaces\nlines"),
        ("nul\x00byte\x07", "nulbyte"),
        ("<!-- comment -->text", "text"),
    ],
)
def test_html_to_text(html: str, expected: str) -> None:
    assert html_to_text(html) == expected


# White space of every kind the regular expressions and str.split read (str.isspace): ASCII,
# C0/C1 separators, no-break and typographic spaces, line and paragraph separators.
_SPACES = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2007\u200a\u2028\u2029\u202f\u205f\u3000"
_HSPACE = re.compile(r"[^\S\n]+")
_NEWLINES = re.compile(r"\s*\n\s*")
_ALLSPACE = re.compile(r"\s+")


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet=st.sampled_from([*_SPACES, "a", "я", "\u200b", "."]), max_size=40))
def test_white_space_collapses_as_the_regular_expressions_did(text: str) -> None:
    """The str.split forms equal the regular expressions they replaced (kept here as the oracle)."""
    assert collapse_space(text) == _NEWLINES.sub("\n", _HSPACE.sub(" ", text)).strip()
    assert _single_line(text) == _ALLSPACE.sub(" ", text).strip()


# Inline markup as feeds write it and as they garble it: the tags the fast path reads (any case,
# attributes quoted three ways, self-closed, misnested, unclosed), references whole and broken,
# references split by a tag, line breaks of three kinds, controls and noncharacters.
_INLINE_NAMES = ["a", "b", "i", "em", "strong", "span", "img", "font", "s", "sup", "q", "nobr", "code"]
_VALUES = st.sampled_from(['"x > y"', "'a\"b'", "plain", '"&amp;"', '"<b>"', '"\r\n"'])
_ATTRIBUTES = st.lists(
    st.tuples(st.sampled_from(["href", "class", "data-x", "a:b", "title"]), st.none() | _VALUES), max_size=3
).map(lambda pairs: "".join(f" {name}" + (f"={value}" if value else "") for name, value in pairs))
_TAGS = st.one_of(
    st.builds(
        lambda n, a, close: f"<{n}{a}{' /' if close else ''}>",
        st.sampled_from(_INLINE_NAMES),
        _ATTRIBUTES,
        st.booleans(),
    ),
    st.builds(lambda n: f"</{n}>", st.sampled_from(_INLINE_NAMES)),
    st.sampled_from(["<B>", "</A >", "<p>", "<br/>", "<li class=x>", "</div>"]),
)
_TEXT_RUNS = st.text(alphabet=st.sampled_from(list('aя \n\r\t;#&\x00\x01\ufdd0\U0001ffff>"=x1')), max_size=8)
_REFERENCES = st.sampled_from(
    ["&amp;", "&amp;lt;", "&lt", "&notit;", "&notin;", "&#13;", "&#x0;", "&#128;", "&#xFDD0;",
     "&#1114112;", "&#", "&am", "p;", "&nbsp;", "&#x2019;"]
)  # fmt: skip


def _read_inline(markup: str) -> str | None:
    """The fast path's reading of ``markup`` as ``html_to_text`` hands it over (block tags as
    newlines), or None where nh3 reads it."""
    return normalize._inline_text(normalize._BLOCK_TAG.sub("\n", markup))


@settings(max_examples=3000, deadline=None)
@given(st.lists(_TAGS | _TEXT_RUNS | _REFERENCES, max_size=12).map("".join))
@example("&amp<b>;</b> &am<i>p; &amp;lt; &notit;")  # a reference split by a tag is no reference
@example("x&#xFDD0;\ufdd0\U0010ffff y")  # noncharacters: html.unescape drops, html5ever keeps
@example("a\r\n<i>b\rc</i>")
@example("&#\x001; &#\x001 <b>\x00</b>")  # NUL ends a reference, then is dropped
def test_inline_markup_is_read_as_nh3_reads_it(markup: str) -> None:
    """``html_to_text`` without an HTML parser, for markup of inline elements only, equals what it
    gives through nh3 (html5ever) for the same markup."""
    fast, slow = "<b></b>" + markup, "<script></script>" + markup  # both read as markup; the script needs nh3
    assert _read_inline(fast) is not None or normalize._odd_number(fast)
    assert _read_inline(slow) is None
    assert normalize.html_to_text(fast) == normalize.html_to_text(slow)


@pytest.mark.parametrize(
    "markup",
    ["<script>x</script>", "<style>b{}</style>", "<title><b>x</b></title>", "<td>a</td>",
     "a < b", "<!-- c -->", "<![CDATA[x]]>", "<svg><b>x</b></svg>", "<b onclick=a<b>x</b>", "<b\rclass=x>",
     "<textarea><i>x</i></textarea>", "</b class=x>", "<image src=x>", "<b\x00>x", "&#x1fffe;", "&am&#1;p;",
     "&#" + "9" * 5000 + ";"],
)  # fmt: skip
def test_other_markup_is_left_to_nh3(markup: str) -> None:
    assert _read_inline(markup) is None


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("markup", "read"),
    [
        ("a" * 50_000 + "<script>", False),
        ("<b " + "a=b " * 20_000 + "<", False),
        ("<b " + "a " * 20_000 + "=", False),
        ("x<b>" * 30_000 + "<i", False),
        ('<b title="' + "x" * 50_000, False),
        ("x<b>y</b>" * 20_000, True),
    ],
)
def test_the_inline_reading_is_linear(markup: str, read: bool) -> None:
    """Hostile markup cannot stall a worker: the patterns never try a text's many splits (the
    first version took seconds for 22 characters and a ``<script>``; these would never end)."""
    assert (normalize._inline_text(markup) is not None) == read


@pytest.mark.parametrize(
    ("text", "hint", "expected"),
    [
        ("Peace treaty between Armenia and Azerbaijan was initialled in Washington", None, "en"),
        ("Мирный договор между Арменией и Азербайджаном парафирован в Вашингтоне", None, "ru"),
        ("Azərbaycan Prezidenti İlham Əliyev Vaşinqtonda sülh sazişini imzaladı", None, "az"),
        ("Հայաստանի և Ադրբեջանի միջև խաղաղության պայմանագիրը նախաստորագրվեց", None, "hy"),
        ("", "ru", "ru"),
        ("12345 !!!", None, None),
        ("ok", "en-GB", "en"),
    ],
)
def test_detect_language(text: str, hint: str | None, expected: str | None) -> None:
    assert detect_language(text, hint) == expected


def test_rss20_drafts() -> None:
    first, second = drafts("rss20.xml")
    assert first.url == "https://news.example.com/world/peace-treaty?id=7"
    assert first.title == "Peace treaty initialled in Washington"
    assert first.text == "Leaders met on Friday.\nSecond paragraph."
    assert first.summary == ""  # the teaser is the text: not stored twice
    assert (first.author, first.language) == ("Jane Doe", "en")
    assert (first.published_at, first.published_from_feed) == (datetime(2025, 8, 8, 15, 30), True)
    assert first.published_at.tzinfo is None
    assert second.url == "https://news.example.com/world/second?page=2"
    assert second.summary == "Short teaser."
    assert second.text == "Short teaser.\nFull body of the second item."
    expected_hash = hashlib.sha256(fold(f"{second.title}\n{second.text}").encode()).hexdigest()
    assert second.content_hash == expected_hash


@pytest.mark.parametrize(
    ("name", "index", "field", "expected"),
    [
        ("atom.xml", 0, "title", "Москва и Баку"),
        ("atom.xml", 0, "url", "https://atom.example.org/blog/posts/1"),
        ("atom.xml", 0, "language", "ru"),
        ("atom.xml", 0, "published_at", datetime(2025, 8, 10, 6, 0)),
        ("atom.xml", 1, "url", None),  # javascript: link
        ("atom.xml", 1, "language", "en"),
        ("rss10.xml", 0, "language", "de"),
        ("jsonfeed.json", 0, "url", "https://feed.example.net/posts/1"),
        ("jsonfeed.json", 0, "text", "Խաղաղության պայմանագիր"),
        ("jsonfeed.json", 1, "text", "5 < 6 & 7 > 3"),
        ("jsonfeed.json", 1, "language", "en"),
        ("cyrillic_cp1251.xml", 0, "title", "Азербайджан и Россия подписали соглашение"),
        ("cyrillic_utf8_bom.xml", 0, "text", "Ёлка, щи и «кавычки» — тире."),
        ("latin1_undeclared.xml", 0, "text", "Açaí e pão."),
        ("double_escaped.xml", 0, "title", 'Tom & Jerry \u2019s "show"'),
        ("double_escaped.xml", 0, "text", "Café au&lait"),
        ("missing_guids_relative.xml", 0, "url", "https://rel.example.com/news/1?a=1&b=2"),
        ("missing_guids_relative.xml", 2, "url", None),  # mailto: (the duplicate was dropped)
    ],
)
def test_draft_fields(name: str, index: int, field: str, expected: object) -> None:
    assert getattr(drafts(name)[index], field) == expected


@pytest.mark.parametrize(
    ("guid", "expected_published"),
    [
        ("d1", (FETCHED, False)),  # 1970
        ("d2", (FETCHED, False)),  # 2100
        ("d3", (FETCHED, False)),  # unparseable
        ("d4", (FETCHED, False)),  # missing
        ("d5", (datetime(2025, 8, 21, 12, 0), True)),  # tomorrow: within two days
    ],
)
def test_bad_dates_fall_back_to_fetch_time(guid: str, expected_published: tuple[datetime, bool]) -> None:
    by_guid = {d.guid: d for d in drafts("bad_dates.xml")}
    draft = by_guid[guid]
    assert (draft.published_at, draft.published_from_feed) == expected_published


@pytest.mark.parametrize(
    "zone",
    [UTC, ZoneInfo("UTC"), ZoneInfo("Etc/UTC"), timezone(timedelta(hours=4)), ZoneInfo("Asia/Baku"), None],
)
def test_published_dates_in_any_zone_become_naive_utc(zone: tzinfo | None) -> None:
    """The draft's dates are naive UTC whatever zone the entry's date and the poll's clock are
    in: a date already in ``datetime.UTC`` only drops its zone, any other is converted first."""
    when = datetime(2025, 8, 20, 9, 30, tzinfo=UTC)
    local = when if zone is None else when.astimezone(zone)
    entry = replace(ENTRY, published=local if zone is not None else when.replace(tzinfo=None))
    for fetched_at in (
        FETCHED,
        FETCHED.replace(tzinfo=UTC),
        FETCHED.replace(tzinfo=UTC).astimezone(ZoneInfo("Asia/Baku")),
    ):
        draft = normalize_entry(entry, feed_url=FEED_URL, feed_language=None, fetched_at=fetched_at)
        assert (draft.published_at, draft.published_from_feed) == (datetime(2025, 8, 20, 9, 30), True)
        assert draft.published_at.tzinfo is None
    # The fetch time stands in, converted alike, when the entry has no usable date.
    late = replace(ENTRY, published=datetime(2100, 1, 1, tzinfo=zone or UTC))
    fetched_at = datetime(2025, 8, 20, 16, 0, tzinfo=ZoneInfo("Asia/Baku"))  # 12:00 UTC
    draft = normalize_entry(late, feed_url=FEED_URL, feed_language=None, fetched_at=fetched_at)
    assert (draft.published_at, draft.published_from_feed) == (FETCHED, False)


def test_identity_keys() -> None:
    entry = replace(ENTRY, guid="https://site.example/a?utm_source=x", title="T")
    one = normalize_entry(entry, feed_url="https://one.example/rss", feed_language=None, fetched_at=FETCHED)
    two = normalize_entry(entry, feed_url="https://two.example/rss", feed_language=None, fetched_at=FETCHED)
    assert one.identity_key == two.identity_key  # URL guid: global
    assert len(one.identity_key) == 64 and int(one.identity_key, 16) >= 0
    link_only = replace(ENTRY, link="https://site.example/a", title="T")
    three = normalize_entry(
        link_only, feed_url="https://three.example/", feed_language=None, fetched_at=FETCHED
    )
    assert three.identity_key == one.identity_key  # permalink guid and link agree
    local = replace(ENTRY, guid="123", title="T")
    a = normalize_entry(local, feed_url="https://one.example/rss", feed_language=None, fetched_at=FETCHED)
    b = normalize_entry(local, feed_url="https://two.example/rss", feed_language=None, fetched_at=FETCHED)
    assert a.identity_key != b.identity_key  # non-URL guid: scoped by feed


def test_no_stored_text_holds_a_nul() -> None:
    """PostgreSQL's text cannot hold NUL (the whole batch's write failed on one such guid)."""
    entry = replace(
        ENTRY,
        guid="item\x00-7",
        link="https://site.example/a\x00b",
        title="A\x00 title",
        summary_html="<p>x\x00y</p>",
        content_html="<p>x\x00y and the body</p>",  # the teaser is kept: it is not the text
        author="desk\x00",
    )
    draft = normalize_entry(entry, feed_url="https://one.example/rss", feed_language=None, fetched_at=FETCHED)
    for name in ("guid", "url", "title", "summary", "text", "author"):
        value = getattr(draft, name)
        assert value and "\x00" not in value, name
    assert draft.guid == "item-7"
    # The key is the one the guid as given had: what the fingerprints and the seen lookup use.
    assert draft.identity_key == entry_identity_key(entry, feed_url="https://one.example/rss")


@pytest.mark.parametrize(
    ("summary_html", "content_html", "summary", "text"),
    [
        # No content: the teaser is the text, stored once (as the text).
        ("<p>The teaser.</p>", "", "", "The teaser."),
        # A content that is the teaser again (feedparser and the fast path copy one to the other).
        ("<p>Same words.</p>", "<div>Same words.</div>", "", "Same words."),
        # A longer content: the text is the content, the teaser is kept beside it.
        (
            "<p>The teaser.</p>",
            "<p>The teaser.</p><p>And the body.</p>",
            "The teaser.",
            "The teaser.\nAnd the body.",
        ),
        # A longer teaser than the content: the teaser is the text.
        ("<p>Longer than the content.</p>", "<p>Short.</p>", "", "Longer than the content."),
        # A teaser over the summary's cap that is the text: not kept as its first 2,000 characters.
        ("<p>" + "word " * 1_000 + "</p>", "", "", ("word " * 1_000).strip()),
    ],
)
def test_the_teaser_is_stored_only_when_it_is_not_the_text(
    summary_html: str, content_html: str, summary: str, text: str
) -> None:
    entry = replace(ENTRY, link="https://site.example/a", summary_html=summary_html)
    entry = replace(entry, content_html=content_html)
    draft = normalize_entry(entry, feed_url="https://one.example/rss", feed_language=None, fetched_at=FETCHED)
    assert (draft.summary, draft.text) == (summary, text)


def test_missing_guid_and_link_dedups_on_title_and_date() -> None:
    result = drafts("missing_guids_relative.xml")
    assert [d.title for d in result] == ["Relative link", "No link either", "Mailto"]
    assert result[1].text == "Two"  # first wins


@pytest.mark.parametrize(
    ("title", "entry_lang", "feed_lang", "configured", "expected"),
    [
        # the declared language is a hint: clear text in another language overrides it
        ("The president met the prime minister today", "ru-RU", "en", "az", "en"),
        ("Президент встретился с премьер-министром сегодня утром", None, "en_US", None, "ru"),
        ("Prezident bu gün Azərbaycanın baş naziri ilə görüşüb", None, None, "ru", "az"),
        ("The president met the prime minister today", None, None, None, "en"),
        # the hint wins where the detector cannot tell (no letters, a bare name)
        ("2024", None, "rus", None, "ru"),
        ("2024", "hy", None, "az", "hy"),
    ],
)
def test_language_precedence(
    title: str, entry_lang: str | None, feed_lang: str | None, configured: str | None, expected: str
) -> None:
    entry = replace(ENTRY, guid="g", title=title, summary_html="", content_html="", language=entry_lang)
    feed = parse_feed(
        b'<rss version="2.0"><channel><title>T</title></channel></rss>', headers={}, url=FEED_URL
    )
    feed = replace(feed, language=feed_lang, entries=(entry,))
    [draft] = normalize_feed(feed, feed_url=FEED_URL, configured_language=configured, fetched_at=FETCHED)
    assert draft.language == expected


def test_set_languages_detects_in_calls_of_a_bounded_size_as_one_text_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Calls of at most ``_DETECT_BATCH`` drafts, each given at most ``_DETECT_CHARS`` of the text
    after its title, and the languages one text at a time gives (``detect_language``)."""
    words = {
        "en": "the talks in Baku went on through the night and the ministers agreed on a text ",
        "ru": "переговоры в Баку продолжались всю ночь и министры согласовали текст ",
        "hy": "Բաքվում բանակցությունները շարունակվեցին ամբողջ գիշեր և նախարարները համաձայնեցին ",
    }
    languages = list(words)
    entries = tuple(
        replace(
            ENTRY,
            guid=f"g{i}",
            title=f"Item {i}",
            # every third text is long: only its first _DETECT_CHARS are detected on
            content_html=words[languages[i % 3]] * (200 if i % 3 == 0 else 2),
        )
        for i in range(2 * normalize._DETECT_BATCH + 5)
    )
    feed = parse_feed(
        b'<rss version="2.0"><channel><title>T</title></channel></rss>', headers={}, url=FEED_URL
    )
    undetected = normalize.draft_feed(
        replace(feed, entries=entries), feed_url=FEED_URL, configured_language=None, fetched_at=FETCHED
    )
    calls: list[tuple[int, int]] = []
    real = normalize.detect_languages

    def spy(texts: list[str], hints: list[str | None]) -> list[str | None]:
        calls.append((len(texts), max(len(t) for t in texts)))
        return real(texts, hints)

    monkeypatch.setattr(normalize, "detect_languages", spy)
    normalize.set_languages(undetected)
    batch = normalize._DETECT_BATCH
    assert [n for n, _ in calls] == [batch, batch, 5]
    assert all(longest <= len("Item 000\n") + normalize._DETECT_CHARS for _, longest in calls)
    for draft, hint in undetected:
        assert draft.language == detect_language(f"{draft.title}\n{draft.text}", hint=hint)
    assert [d.language for d, _ in undetected][:3] == ["en", "ru", "hy"]


def test_caps_title_and_text() -> None:
    entry = replace(ENTRY, title="T" * 5_000, content_html="<p>" + "я" * 80_000 + "</p>")
    draft = normalize_entry(entry, feed_url=FEED_URL, feed_language="ru", fetched_at=FETCHED)
    assert len(draft.title) == 1_000
    assert len(draft.text.encode()) <= 100_000


def test_aware_fetch_time_is_stored_naive() -> None:
    draft = normalize_entry(
        ENTRY, feed_url=FEED_URL, feed_language="en", fetched_at=FETCHED.replace(tzinfo=UTC)
    )
    assert (draft.published_at, draft.published_from_feed) == (FETCHED, False)


@settings(max_examples=2000, deadline=None)
@given(
    st.text(
        alphabet=st.one_of(
            st.characters(max_codepoint=0x7F),
            st.sampled_from(["é", "я", "\ud800", "\udfff", "\ufffe", "\uffff", "\u200b", "\x85"]),
        ),
        max_size=40,
    )
)
def test_controls_are_dropped_as_the_regular_expression_drops_them(text: str) -> None:
    """The ASCII shortcut (bytes.translate) equals the regular expression on every text."""
    assert normalize._drop_controls(text) == normalize._CONTROL.sub("", text)
