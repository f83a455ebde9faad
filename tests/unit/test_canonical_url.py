"""canonical_url's fast path for already-canonical URLs answers what the full canonicalization does.

``_reference`` is a frozen copy (on purpose: it must not follow later changes) of canonical_url as
it was before the fast path (urljoin, urlsplit, tracking parameters dropped, w3lib's
canonicalize_url), uncached. Compared on generated URLs around the
fast path's grammar (and just outside it: upper case, dot and empty segments, default and
out-of-range ports, queries, fragments, escapes, credentials, white space), with and without a
base, and on every link and guid of the shared corpus's real feeds.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import SplitResult, parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from w3lib.url import canonicalize_url

from feedwatch import normalize
from feedwatch.normalize import canonical_url
from feedwatch.parse import ParseError, parse_feed

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"


def _reference(url: str, base: str | None = None) -> str | None:
    url = url.strip()
    try:
        if base:
            url = urljoin(base.strip(), url)
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            return None
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if normalize._keep(k)]
        url = urlunsplit(parts._replace(netloc=_netloc(parts), query=urlencode(query), fragment=""))
        return str(canonicalize_url(url))
    except ValueError:
        return None


def _netloc(parts: SplitResult) -> str:
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    default = 443 if parts.scheme.lower() == "https" else 80
    return f"{host}:{port}" if port is not None and port != default else host


LABEL = st.text("abcxyz019-AZ", min_size=1, max_size=8) | st.sampled_from(["a" * 63, "b" * 64, "xn--d1acj3b"])
SEGMENT = st.text("aZ09._~-%/!$&'()*+,;=:@ é", max_size=10) | st.sampled_from(["", ".", "..", "%41", "a.b"])
PORT = st.sampled_from(["", ":80", ":443", ":8080", ":0", ":08080", ":65535", ":65536", ":99999", ":1"])
TAIL = st.sampled_from(["", "", "", "?a=1", "?utm_source=x", "#frag", "?", "#"])


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTP", "Https", "ftp"]))
    host = ".".join(draw(st.lists(LABEL, min_size=1, max_size=4)))
    user = draw(st.sampled_from(["", "", "", "user:pw@"]))
    path = "/".join(draw(st.lists(SEGMENT, max_size=5)))
    slash = draw(st.sampled_from(["/", "/", ""]))
    space = draw(st.sampled_from(["", "", " "]))
    return f"{space}{scheme}://{user}{host}{draw(PORT)}{slash}{path}{draw(TAIL)}{space}"


@st.composite
def plain_urls(draw: st.DrawFn) -> str:
    """Mostly in the fast path's grammar; the odd dot segment, default port or long label not."""
    host = ".".join(draw(st.lists(st.text("abz09-", min_size=1, max_size=6), min_size=1, max_size=4)))
    port = draw(st.sampled_from(["", "", ":8080", ":1", ":80", ":443", ":65535", ":65536"]))
    segments = draw(st.lists(st.text("abZ09._~-", min_size=1, max_size=8), max_size=5))
    slash = draw(st.sampled_from(["", "/"])) if segments else ""
    return f"{draw(st.sampled_from(['http', 'https']))}://{host}{port}/{'/'.join(segments)}{slash}"


BASES = st.sampled_from(
    [None, "", "https://base.example/feed", "http://127.0.0.1:8080/x/", " HTTP://B.example "]
)


@settings(max_examples=3000, deadline=None)
@given(urls() | plain_urls(), BASES)
def test_generated_urls(url: str, base: str | None) -> None:
    assert canonical_url(url, base) == _reference(url, base)


@pytest.mark.parametrize(
    "url",
    [
        "https://a.example/",
        "https://a.example/news/2025/05/12/peace-talks",
        "https://a.example/news/",
        "http://127.0.0.1:8080/news/poll-1-2",
        "https://a.example",  # no path: w3lib adds "/"
        "https://a.example:443/x",
        "http://a.example:80/x",
        "https://A.example/x",
        "https://a.example/x/./y",
        "https://a.example/x//y",
        "https://a.example/%41",
        "https://a.example/x?utm_source=rss",
        "https://a.example/x#top",
        # A last label that is a number makes the host an IPv4 address (WHATWG; w3lib since 2.6),
        # rewritten or refused; four decimal octets are left as they are.
        "http://0/",
        "http://127.1/",
        "http://0x7f.1/x",
        "http://1.2.3/",
        "http://01.2.3.4/",
        "http://1.2.3.4/",
        "http://256.1.1.1/",
        "http://09/",
        "http://a.0/",
        "http://a.0xg/",
        "http://a.b1/",
    ],
)
def test_edges_of_the_fast_path(url: str) -> None:
    for base in (None, "https://base.example/feed"):
        assert canonical_url(url, base) == _reference(url, base)


@pytest.mark.corpus
def test_every_link_and_guid_of_the_real_feeds() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"shared corpus not present at {SHARED}")
    files = [p for root in ("feeds", "feedparser-tests") for p in sorted((SHARED / root).rglob("*"))]
    compared = 0
    for path in files:
        if not path.is_file() or path.name == "LICENSE":
            continue
        url = f"https://corpus.example/{path.name}"
        try:
            feed = parse_feed(path.read_bytes(), headers={}, url=url)
        except ParseError:
            continue
        for entry in feed.entries:
            for value in (entry.link, entry.guid):
                if value:
                    base = entry.base or url
                    assert canonical_url(value, base) == _reference(value, base), (path, value)
                    assert canonical_url(value) == _reference(value), (path, value)
                    compared += 1
    assert compared > 1000
