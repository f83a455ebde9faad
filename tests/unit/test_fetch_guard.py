"""SSRF guard, table-driven: every refused range, odd host spellings, schemes, the override."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedwatch.fetch import AddressPolicy, FetchError, check_url, guard
from feedwatch.fetch.guard import blocked_reason, filter_addresses, legacy_ipv4, validate_text, validate_url

DEFAULT = AddressPolicy()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",  # loopback
        "127.255.255.254",
        "10.0.0.1",  # private
        "10.255.255.255",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.1.1",
        "169.254.169.254",  # link-local / cloud metadata
        "100.64.0.1",  # CGNAT
        "100.127.255.254",
        "0.0.0.0",  # unspecified
        "0.1.2.3",
        "224.0.0.1",  # multicast
        "239.255.255.250",
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "192.0.0.8",  # IETF assignments
        "192.0.2.1",  # documentation
        "198.51.100.7",
        "203.0.113.9",
        "198.18.0.1",  # benchmarking
        "::1",  # v6 loopback
        "::",  # v6 unspecified
        "fe80::1",  # link-local
        "fe80::1%eth0",
        "fc00::1",  # unique local
        "fd12:3456::1",
        "fec0::1",  # site-local (deprecated)
        "ff02::1",  # multicast
        "100::1",  # discard
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.1.2.3",
        "::ffff:169.254.169.254",
        "::127.0.0.1",  # IPv4-compatible (deprecated)
        "64:ff9b::a00:1",  # NAT64 embedding 10.0.0.1
        "2002:7f00:1::1",  # 6to4 embedding 127.0.0.1
        "2002:c0a8:101::1",  # 6to4 embedding 192.168.1.1
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo (client 127.0.0.1)
        "2001:db8::1",  # documentation
        "3fff::1",
    ],
)
def test_non_public_addresses_are_blocked(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "172.32.0.1",  # just outside 172.16/12
        "100.128.0.1",  # just outside 100.64/10
        "11.0.0.1",
        "2606:4700:4700::1111",
        "2a00:1450:4001:80b::200e",
        "::ffff:8.8.8.8",  # mapped public
        "2002:808:808::1",  # 6to4 embedding 8.8.8.8
    ],
)
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("host", "spelled"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
    ],
)
def test_legacy_numeric_hosts_are_decoded(host: str, spelled: str) -> None:
    assert str(legacy_ipv4(host)) == spelled


@pytest.mark.parametrize("host", ["127.0.0.1", "example.com", "deadbeef.example", "1.2.3.4.5"])
def test_ordinary_hosts_are_not_legacy_numeric(host: str) -> None:
    assert legacy_ipv4(host) is None


@pytest.mark.parametrize(
    ("url", "error_class"),
    [
        ("file:///etc/passwd", "blocked_address"),
        ("ftp://example.com/feed.xml", "blocked_address"),
        ("gopher://example.com:70/_GET", "blocked_address"),
        ("javascript:alert(1)", "blocked_address"),
        ("example.com/feed", "blocked_address"),  # no scheme
        ("http:///feed", "invalid_url"),
        ("http://127.0.0.1/", "blocked_address"),
        ("http://127.0.0.1:8080/feed", "blocked_address"),
        ("http://10.0.0.5/", "blocked_address"),
        ("http://169.254.169.254/latest/meta-data/", "blocked_address"),
        ("http://[::1]/", "blocked_address"),
        ("http://[::ffff:127.0.0.1]/", "blocked_address"),
        ("http://[::ffff:7f00:1]/", "blocked_address"),
        ("http://[fe80::1]/", "blocked_address"),
        ("http://[2002:7f00:1::1]/", "blocked_address"),
        ("http://2130706433/", "blocked_address"),
        ("http://0x7f.1/", "blocked_address"),
        ("http://017700000001/", "blocked_address"),
        ("http://127.1/", "blocked_address"),
        ("http://0x8.8.8.8/", "invalid_url"),  # public, but a spelling we never pass on
    ],
)
def test_refused_urls(url: str, error_class: str) -> None:
    with pytest.raises(FetchError) as info:
        validate_url(url, DEFAULT)
    assert info.value.error_class == error_class


@pytest.mark.parametrize(
    "url",
    [
        "http://8.8.8.8/feed",
        "https://1.1.1.1/",
        "https://[2606:4700:4700::1111]/rss",
        "http://example.com/feed.xml",  # names are checked later, at resolution
        "HTTPS://Example.COM./atom",
    ],
)
def test_accepted_urls(url: str) -> None:
    validate_url(url, DEFAULT)


@pytest.mark.parametrize(
    ("policy", "url", "allowed"),
    [
        (AddressPolicy(allowed=frozenset({("127.0.0.1", 8080)})), "http://127.0.0.1:8080/", True),
        (AddressPolicy(allowed=frozenset({("127.0.0.1", 8080)})), "http://127.0.0.1:8081/", False),
        (AddressPolicy(allowed=frozenset({("127.0.0.1", 8080)})), "http://127.0.0.2:8080/", False),
        (AddressPolicy(allowed=frozenset({("127.0.0.1", 80)})), "http://127.0.0.1/", True),
        (AddressPolicy(allowed=frozenset({("::1", 8080)})), "http://[::1]:8080/", True),
        (AddressPolicy(allow_private=True), "http://10.0.0.1/", True),
        (AddressPolicy(allow_private=True), "http://[::1]:9/", True),
        (AddressPolicy(), "http://10.0.0.1/", False),
    ],
)
def test_policy_override(policy: AddressPolicy, url: str, allowed: bool) -> None:
    if allowed:
        validate_url(url, policy)
    else:
        with pytest.raises(FetchError, match="blocked_address"):
            validate_url(url, policy)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://x/"])
def test_allow_private_still_refuses_other_schemes(url: str) -> None:
    with pytest.raises(FetchError, match="blocked_address"):
        validate_url(url, AddressPolicy(allow_private=True))


def _res(host: str, port: int = 80) -> dict[str, object]:
    return {"hostname": "h", "host": host, "port": port, "family": 2, "proto": 6, "flags": 0}


def test_resolver_filter_drops_refused_addresses() -> None:
    kept = filter_addresses("h", [_res("127.0.0.1"), _res("8.8.8.8")], DEFAULT)  # type: ignore[list-item]
    assert [r["host"] for r in kept] == ["8.8.8.8"]


def test_resolver_filter_refuses_when_nothing_is_left() -> None:
    with pytest.raises(FetchError, match="blocked_address"):
        filter_addresses("h", [_res("127.0.0.1"), _res("::1")], DEFAULT)  # type: ignore[list-item]


def test_resolver_filter_honours_allowed_port() -> None:
    policy = AddressPolicy(allowed=frozenset({("127.0.0.1", 8080)}))
    kept = filter_addresses("h", [_res("127.0.0.1", 8080)], policy)  # type: ignore[list-item]
    assert len(kept) == 1
    with pytest.raises(FetchError):
        filter_addresses("h", [_res("127.0.0.1", 8081)], policy)  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("url", "error_class"),
    [
        ("http://localhost/hook", "blocked_address"),  # resolved, then refused
        ("file:///etc/passwd", "blocked_address"),
        ("http://127.0.0.1:9/", "blocked_address"),
        ("http://0x7f.1/", "blocked_address"),
        ("http://no-such-host.invalid/", "invalid_url"),
    ],
)
def test_check_url_refuses(url: str, error_class: str) -> None:
    with pytest.raises(FetchError) as info:
        check_url(url, DEFAULT)
    assert info.value.error_class == error_class


def test_check_url_accepts_public_literal_and_allowed_loopback() -> None:
    check_url("https://8.8.8.8/hook", DEFAULT)
    check_url("http://localhost:8080/hook", AddressPolicy(allow_private=True))


# --- validate_text: a plain URL checked as written ------------------------------------------

_POLICIES = (
    DEFAULT,
    AddressPolicy(allow_private=True),
    AddressPolicy(allowed=frozenset({("127.0.0.1", 8080)})),
)


def _by_yarl(url: str, policy: AddressPolicy) -> tuple[str, str] | tuple[str, str, str]:
    """What ``validate_text`` must give: ``validate_url``'s URL written by yarl and its host, or
    its error."""
    try:
        parsed = validate_url(url, policy)
    except FetchError as exc:
        return ("error", exc.error_class, str(exc))
    return str(parsed), parsed.raw_host or ""


def _by_text(url: str, policy: AddressPolicy) -> tuple[str, str] | tuple[str, str, str]:
    try:
        return validate_text(url, policy)
    except FetchError as exc:
        return ("error", exc.error_class, str(exc))


_PLAIN_LIKE = st.from_regex(guard._PLAIN, fullmatch=True) | st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}{port}{path}",
    st.sampled_from(["http", "https", "HTTP", "ftp"]),
    st.sampled_from(["127.0.0.1", "10.0.0.1", "93.184.216.34", "0x7f.1", "2130706433", "127.1",
                     "news.example", "News.Example", "news.example.", "xn--p1ai", "[::1]", "u@h"]),
    st.sampled_from(["", ":80", ":443", ":8080", ":0", ":080", ":65535", ":65536", ":99999", ":"]),
    st.sampled_from(["", "/", "/feed.xml", "/a/./b", "/a/../b", "/.well-known/x", "/a?b=c&d=e",
                     "/a?", "/%7e", "/a b", "/a#f", "/Ünï", "/a?x=/y?z"]),
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(_PLAIN_LIKE, st.sampled_from(_POLICIES))
def test_validate_text_gives_what_yarl_gives(url: str, policy: AddressPolicy) -> None:
    """Every URL, plain or not, comes out of ``validate_text`` as ``validate_url`` writes it,
    with its host, or with the same error."""
    assert _by_text(url, policy) == _by_yarl(url, policy)


def test_a_plain_url_is_not_parsed_by_yarl(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(url: object, policy: object) -> None:
        raise AssertionError(f"yarl's parse of {url}")

    monkeypatch.setattr(guard, "validate_url", refuse)
    assert validate_text("http://127.0.0.1:8080/poll/17?x=1", _POLICIES[2]) == (
        "http://127.0.0.1:8080/poll/17?x=1",
        "127.0.0.1",
    )
    with pytest.raises(FetchError) as refused:
        validate_text("http://127.0.0.1:8081/poll/17", DEFAULT)
    assert refused.value.error_class == "blocked_address"
    with pytest.raises(AssertionError):  # a default port written out: yarl drops it
        validate_text("http://127.0.0.1:80/poll/17", DEFAULT)
