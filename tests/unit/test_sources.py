"""The feeds loader: TOML and OPML in, FeedSpec out, one clear error per bad file."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedwatch.sources import FeedsConfigError, FeedSpec, load_feeds

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sources"
REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"


def write(tmp_path: Path, text: str, name: str = "feeds.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        pytest.param(
            '[[feeds]]\nurl = "https://example.org/rss"\n',
            [FeedSpec(url="https://example.org/rss", interval_minutes=7.0)],
            id="minimal-uses-caller-default",
        ),
        pytest.param(
            "[defaults]\ninterval_minutes = 15\nlanguage = 'ru'\n"
            '[[feeds]]\nurl = "https://a.example/rss"\n'
            '[[feeds]]\nurl = "https://b.example/rss"\ninterval_minutes = 2.5\nlanguage = "EN"\n',
            [
                FeedSpec(url="https://a.example/rss", language="ru", interval_minutes=15.0),
                FeedSpec(url="https://b.example/rss", language="en", interval_minutes=2.5),
            ],
            id="defaults-then-own-values",
        ),
        pytest.param(
            '[[feeds]]\nurl = " https://a.example/rss "\nname = "A"\nlanguage = "hy"\n'
            "interval_minutes = 5\nmin_interval_minutes = 1\nmax_interval_minutes = 60\n"
            'tags = ["priority", "armenia", "priority", " "]\nfull_text = true\n'
            "enabled = false\n",
            [
                FeedSpec(
                    url="https://a.example/rss",
                    name="A",
                    language="hy",
                    interval_minutes=5.0,
                    min_interval_minutes=1.0,
                    max_interval_minutes=60.0,
                    tags=("priority", "armenia"),
                    full_text=True,
                    enabled=False,
                )
            ],
            id="every-key",
        ),
        pytest.param("", [], id="empty-file"),
        pytest.param(
            '[[feeds]]\nurl = "https://a.example/rss"\nlanguage = "az-Latn"\n',
            [FeedSpec(url="https://a.example/rss", language="az", interval_minutes=7.0)],
            id="language-subtag-dropped",
        ),
    ],
)
def test_valid_toml(tmp_path: Path, toml: str, expected: list[FeedSpec]) -> None:
    assert load_feeds(write(tmp_path, toml), default_interval_minutes=7.0) == expected


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        pytest.param('[[feeds]]\nname = "x"\n', "feed #1: missing url", id="missing-url"),
        pytest.param('[[feeds]]\nurl = ""\n', "feed #1: url must be a non-empty", id="empty-url"),
        pytest.param(
            '[[feeds]]\nurl = "file:///etc/passwd"\n',
            "feed #1 (file:///etc/passwd): url scheme must be http or https, not 'file'",
            id="file-scheme",
        ),
        pytest.param('[[feeds]]\nurl = "ftp://example.org/rss"\n', "not 'ftp'", id="ftp-scheme"),
        pytest.param('[[feeds]]\nurl = "https:///rss"\n', "url has no host", id="no-host"),
        pytest.param(
            '[[feeds]]\nurl = "https://a.example/rss"\n[[feeds]]\nurl = "https://A.EXAMPLE/rss"\n',
            "feed #2 (https://A.EXAMPLE/rss): duplicate url (same as feed #1)",
            id="duplicate-url",
        ),
        pytest.param(
            '[[feeds]]\nurl = "https://a.example/rss"\ninterval_minutes = 0\n',
            "bad interval: interval_minutes must be a number > 0, got 0",
            id="zero-interval",
        ),
        pytest.param(
            '[[feeds]]\nurl = "https://a.example/rss"\ninterval_minutes = "5"\n',
            "bad interval: interval_minutes must be a number > 0",
            id="string-interval",
        ),
        pytest.param(
            '[[feeds]]\nurl = "https://a.example/rss"\ninterval_minutes = nan\n',
            "bad interval",
            id="nan-interval",
        ),
        pytest.param(
            '[[feeds]]\nurl = "https://a.example/rss"\n'
            "min_interval_minutes = 30\nmax_interval_minutes = 10\n",
            "min_interval_minutes 30 > max_interval_minutes 10",
            id="min-above-max",
        ),
        pytest.param(
            '[[feeds]]\nurl = "https://a.example/rss"\nmin_interval_minutes = 30\n',
            "interval_minutes 10 < min_interval_minutes 30",
            id="interval-below-min",
        ),
        pytest.param(
            '[[feeds]]\nurl = "https://a.example/rss"\nintervall_minutes = 5\n',
            "unknown key(s) ['intervall_minutes']; allowed: ['url', 'name', 'language', "
            "'interval_minutes', 'min_interval_minutes', 'max_interval_minutes', 'tags', "
            "'full_text', 'enabled']",
            id="unknown-key",
        ),
        pytest.param(
            '[defaults]\nurl = "https://a.example/rss"\n',
            "unknown key(s) ['url'] in [defaults]; allowed:",
            id="url-in-defaults",
        ),
        pytest.param('[[feed]]\nurl = "https://a.example/rss"\n', "top-level", id="typo-table"),
        pytest.param(
            '[[feeds]]\nurl = "https://a.example/rss"\nlanguage = "russian"\n',
            "language must be an ISO 639-1 code",
            id="bad-language",
        ),
        pytest.param(
            '[[feeds]]\nurl = "https://a.example/rss"\ntags = "priority"\n',
            "tags must be a list of strings",
            id="tags-not-list",
        ),
        pytest.param(
            '[[feeds]]\nurl = "https://a.example/rss"\nenabled = "no"\n',
            "enabled must be true or false",
            id="enabled-not-bool",
        ),
        pytest.param("[[feeds]\n", "invalid TOML", id="broken-toml"),
    ],
)
def test_invalid_toml(tmp_path: Path, toml: str, message: str) -> None:
    path = write(tmp_path, toml)
    with pytest.raises(FeedsConfigError) as info:
        load_feeds(path, default_interval_minutes=10.0)
    assert str(info.value).startswith(str(path))
    assert message in str(info.value)


def test_error_carries_structured_fields(tmp_path: Path) -> None:
    path = write(tmp_path, '[[feeds]]\nurl = "https://a.example/rss"\n[[feeds]]\nurl = "gopher://x"\n')
    with pytest.raises(FeedsConfigError) as info:
        load_feeds(path)
    assert (info.value.path, info.value.index, info.value.url) == (path, 2, "gopher://x")
    assert isinstance(info.value, ValueError)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(FeedsConfigError, match="cannot read the feeds file"):
        load_feeds(tmp_path / "absent.toml")


def test_bad_default_interval(tmp_path: Path) -> None:
    with pytest.raises(FeedsConfigError, match="default_interval_minutes"):
        load_feeds(write(tmp_path, ""), default_interval_minutes=0)


def test_opml_nested_categories_become_tags() -> None:
    feeds = load_feeds(FIXTURES / "nested.opml", default_interval_minutes=3.0)
    assert feeds == [
        FeedSpec(
            url="http://news.am/eng/rss/",
            name="News.am",
            language="en",
            interval_minutes=3.0,
            tags=("Caucasus", "Armenia"),
        ),
        FeedSpec(
            url="https://en.trend.az/feeds/index.rss",
            name="Trend News Agency",
            language="en",
            interval_minutes=3.0,
            tags=("Caucasus",),
        ),
        FeedSpec(
            url="https://www.kommersant.ru/RSS/news.xml",
            name="Kommersant",
            language="ru",
            interval_minutes=3.0,
        ),
    ]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        pytest.param(
            "feeds.txt",
            '<opml version="2.0"><body><outline text="x" xmlUrl="https://a.example/rss"/></body></opml>',
            None,
            id="detected-by-content",
        ),
        pytest.param(
            "feeds.opml",
            '<opml><body><outline xmlUrl="javascript:alert(1)"/></body></opml>',
            "feed #1 (javascript:alert(1)): url scheme must be http or https",
            id="bad-scheme",
        ),
        pytest.param(
            "feeds.opml",
            '<opml><body><outline xmlUrl="https://a.example/rss"/>'
            '<outline text="dup"><outline xmlUrl="https://a.example/rss"/></outline>'
            "</body></opml>",
            "feed #2 (https://a.example/rss): duplicate url",
            id="duplicate",
        ),
        pytest.param("feeds.xml", "<rss><channel/></rss>", "not an OPML document", id="rss"),
        pytest.param("feeds.opml", "<opml><head/></opml>", "no <body>", id="no-body"),
        pytest.param("feeds.opml", "<opml><body>", "invalid XML", id="truncated"),
    ],
)
def test_opml_cases(tmp_path: Path, name: str, text: str, message: str | None) -> None:
    path = write(tmp_path, text, name)
    if message is None:
        assert [f.url for f in load_feeds(path)] == ["https://a.example/rss"]
        return
    with pytest.raises(FeedsConfigError) as info:
        load_feeds(path)
    assert message in str(info.value)


@pytest.mark.parametrize("fixture", ["entity.opml", "external.opml"])
def test_opml_with_dtd_or_entities_is_refused(fixture: str) -> None:
    with pytest.raises(FeedsConfigError, match="must not contain a DTD or entity"):
        load_feeds(FIXTURES / fixture)


def test_priority_tag() -> None:
    assert FeedSpec(url="https://a.example/", tags=("priority",)).is_priority
    assert not FeedSpec(url="https://a.example/").is_priority


@pytest.mark.parametrize("name", ["feeds.toml", "feeds.example.opml"])
def test_shipped_feed_lists_load(name: str) -> None:
    feeds = load_feeds(REPO_CONFIG / name)
    assert feeds, name
    assert all(f.url.startswith(("http://", "https://")) for f in feeds)
    assert all(f.name for f in feeds)


def test_shipped_feeds_each_cite_a_source() -> None:
    """Every [[feeds]] entry in config/feeds.toml is preceded by its '# source:' comment."""
    lines = (REPO_CONFIG / "feeds.toml").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "[[feeds]]":
            before = [x.strip() for x in lines[max(0, i - 4) : i]]
            assert any(x.startswith("# source:") for x in before), f"line {i + 1} has no source"
