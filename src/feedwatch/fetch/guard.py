"""SSRF guard: which URLs and which addresses the fetcher may reach.

Policy, in the order it is applied:

1. Scheme: only ``http`` and ``https``. Anything else (``file``, ``ftp``, ``gopher``...) is
   ``blocked_address``; a URL without a host is ``invalid_url``.
2. Host spelling: a host that the C library would read as an IPv4 address but that is not a
   canonical dotted quad (``2130706433``, ``0x7f.1``, ``017700000001``, ``127.1``) is refused:
   ``blocked_address`` when the address it spells is blocked, ``invalid_url`` otherwise.
3. Address: every address we connect to must be public. The check runs on the address actually
   connected to: literal-IP URLs are checked before the request; for a host name, the feed
   fetch checks every address libcurl resolved as it opens the socket for it
   (``feedwatch.fetch.client``, ``OPENSOCKETFUNCTION``), and the webhook channel's aiohttp
   connector resolves through its ``GuardedResolver`` (``feedwatch.channels.webhook``), which
   keeps what :func:`filter_addresses` allows. So a name that re-resolves to
   127.0.0.1 between two requests (DNS rebinding) is caught on the second one. Blocked
   addresses are dropped from a resolution; if none is left the fetch fails.

"Public" is decided by explicit tables below rather than ``ipaddress.is_private``/``is_global``,
whose classification had bugs until Python 3.11.10 (we run 3.11.7). IPv6 is allow-listed to
global unicast (2000::/3) minus special ranges; IPv4-mapped (::ffff:a.b.c.d), NAT64 (64:ff9b::/96)
and 6to4 (2002::/16) addresses are judged by the IPv4 address they embed. Teredo (2001::/32) sits
in the IETF protocol block 2001::/23, refused as a whole: no feed server lives there.

:class:`AddressPolicy` makes the rule injectable: ``allow_private`` lifts the address check
(``FEEDWATCH_ALLOW_PRIVATE_NETWORKS``, tests only), ``allowed`` lets exact ``(ip, port)`` pairs
through so a test can serve from 127.0.0.1:PORT while every other loopback address stays refused.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Final

from yarl import URL

from feedwatch.fetch.errors import ErrorClass, FetchError
from feedwatch.urls import DEFAULT_PORTS, kept_port

if TYPE_CHECKING:
    from aiohttp.abc import ResolveResult

    from feedwatch.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES: Final = frozenset({"http", "https"})


def _nets4(*cidrs: str) -> tuple[ipaddress.IPv4Network, ...]:
    return tuple(ipaddress.IPv4Network(c) for c in cidrs)


def _nets6(*cidrs: str) -> tuple[ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.IPv6Network(c) for c in cidrs)


# IANA IPv4 special-purpose registry, every block not reachable on the public internet.
BLOCKED_V4: Final = _nets4(
    "0.0.0.0/8",  # "this network", includes the unspecified address
    "10.0.0.0/8",  # private
    "100.64.0.0/10",  # carrier-grade NAT
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
    "172.16.0.0/12",  # private
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",  # documentation
    "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
    "192.168.0.0/16",  # private
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # documentation
    "203.0.113.0/24",  # documentation
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, includes broadcast 255.255.255.255
)

GLOBAL_UNICAST_V6: Final = ipaddress.IPv6Network("2000::/3")
MAPPED_V6: Final = ipaddress.IPv6Network("::ffff:0:0/96")
NAT64_V6: Final = ipaddress.IPv6Network("64:ff9b::/96")
SIXTOFOUR_V6: Final = ipaddress.IPv6Network("2002::/16")
# Special blocks inside 2000::/3; everything outside 2000::/3 (loopback, unspecified, ULA fc00::/7,
# link-local fe80::/10, site-local, multicast ff00::/8, discard 100::/64...) is refused already.
BLOCKED_V6: Final = _nets6(
    "2001::/23",  # IETF protocol assignments: Teredo, ORCHID, benchmarking
    "2001:db8::/32",  # documentation
    "3fff::/20",  # documentation (RFC 9637)
)


def blocked_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address, or ``None`` when it is."""
    if isinstance(ip, ipaddress.IPv4Address):
        for net in BLOCKED_V4:
            if ip in net:
                return f"{ip} is in {net}"
        return None
    if ip.scope_id:
        return f"{ip} has a zone id"
    for embedding in (MAPPED_V6, NAT64_V6):
        if ip in embedding:
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
            why = blocked_reason(inner)
            return f"{ip} embeds {inner}: {why}" if why else None
    if ip in SIXTOFOUR_V6:
        inner = ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF)
        why = blocked_reason(inner)
        return f"{ip} embeds {inner}: {why}" if why else None
    if ip not in GLOBAL_UNICAST_V6:
        return f"{ip} is not global unicast"
    for net6 in BLOCKED_V6:
        if ip in net6:
            return f"{ip} is in {net6}"
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses the fetcher may connect to (see the module docstring)."""

    allow_private: bool = False
    allowed: frozenset[tuple[str, int]] = frozenset()

    @classmethod
    def from_settings(cls, s: Settings) -> AddressPolicy:
        return cls(allow_private=s.allow_private_networks)

    def refusal(self, ip: IPAddress, port: int) -> str | None:
        """Why connecting to ``ip:port`` is refused, or ``None`` when it is allowed."""
        if self.allow_private or (ip.compressed, port) in self.allowed:
            return None
        return blocked_reason(ip)


def parse_ip(host: str) -> IPAddress | None:
    """``host`` as an IP address when it is a literal (v6 with or without brackets)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The address a non-canonical numeric host spells (``0x7f.1``, ``2130706433``), else None.

    ``getaddrinfo`` accepts these inet_aton forms, so they must be refused before anything
    else: a dotted-quad-only filter would wave them through to 127.0.0.1.
    """
    bare = host.rstrip(".")
    if not bare or not all(c in "0123456789abcdefxABCDEFX." for c in bare):
        return None
    try:
        packed = socket.inet_aton(bare)
    except OSError:
        return None
    ip = ipaddress.IPv4Address(packed)
    return None if str(ip) == host else ip


def validate_url(url: str | URL, policy: AddressPolicy) -> URL:
    """Parse and check everything decidable without DNS; raise FetchError or return the URL."""
    try:
        parsed = url if isinstance(url, URL) else URL(url)
    except (ValueError, TypeError) as exc:
        raise FetchError("invalid_url", f"unparseable URL: {exc}") from None
    scheme = parsed.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise FetchError("blocked_address", f"scheme {scheme or '(none)'!r} is not http(s)")
    host = parsed.raw_host
    if not host:
        raise FetchError("invalid_url", f"no host in {str(parsed)[:200]!r}")
    port = parsed.port or DEFAULT_PORTS[scheme]
    refused = _host_refusal(host, port, policy)
    if refused is not None:
        raise FetchError(*refused)
    return parsed


#: An http(s) URL that yarl writes back as it is, with no dot segment (``/.``) and a port it
#: keeps (:func:`feedwatch.urls.kept_port`), both checked apart: a host of lower-case letters,
#: digits, dots and hyphens (no user), a port with no leading zero, a path of characters that
#: need no quoting and after it a query of such characters that is not empty, no fragment.
#: ``tests/unit/test_fetch_guard.py`` holds it to yarl. (``normalize._PLAIN_URL`` is the like
#: pattern for w3lib's canonical form, a narrower set held to w3lib.)
_PLAIN = re.compile(
    r"(?P<scheme>https?)://(?P<host>[a-z0-9.-]+)(?::(?P<port>[1-9][0-9]{0,4}))?"
    r"(?:/[A-Za-z0-9._~!$&'()*+,;=:@/-]*(?:\?[A-Za-z0-9._~!$&'()*+,;=:@/?-]+)?)?"
)


def validate_text(url: str | URL, policy: AddressPolicy) -> tuple[str, str]:
    """:func:`validate_url`, giving the URL as it is to be fetched (yarl's writing of it) and
    its host as written. A plain URL (``_PLAIN``: a feed's URL as a rule) is checked as written,
    without yarl's parse: yarl caches 128 URLs, which a worker polling thousands of feeds
    misses on every poll, and then its parse cost a 304's poll 7.7 % of its instructions (round
    57 in docs/performance-history.md). Any other URL goes through :func:`validate_url`."""
    if isinstance(url, str) and "/." not in url and (plain := _PLAIN.fullmatch(url)) is not None:
        scheme, host, written = plain.groups()
        # A port yarl refuses (past 65535) or drops (the default) leaves the URL to yarl.
        if (port := kept_port(scheme, written)) is not None:
            refused = _host_refusal(host, port, policy)
            if refused is not None:
                raise FetchError(*refused)
            return url, host
    parsed = validate_url(url, policy)
    return str(parsed), parsed.raw_host or ""


@lru_cache(maxsize=8192)
def _host_refusal(host: str, port: int, policy: AddressPolicy) -> tuple[ErrorClass, str] | None:
    """(error class, message) when the policy refuses ``host:port`` as written, else ``None``.

    Cached per host: the same few thousand hosts are checked on every poll, and parsing a name
    as an address (to find it is not one) cost ~10 µs a fetch. The answer depends only on the
    arguments; the policy is a frozen value."""
    odd = legacy_ipv4(host)
    if odd is not None:
        why = policy.refusal(odd, port)
        if why:
            return "blocked_address", f"numeric host {host!r} means {odd}: {why}"
        return "invalid_url", f"non-canonical numeric host {host!r}"
    ip = parse_ip(host)
    if ip is not None:
        why = policy.refusal(ip, port)
        if why:
            return "blocked_address", why
    return None


def filter_addresses(
    host: str, results: Iterable[ResolveResult], policy: AddressPolicy
) -> list[ResolveResult]:
    """The resolved addresses the policy allows; FetchError(blocked_address) when none is."""
    kept: list[ResolveResult] = []
    refused: list[str] = []
    for res in results:
        ip = parse_ip(res["host"])
        why = "unparseable address" if ip is None else policy.refusal(ip, res["port"])
        if why:
            refused.append(why)
        else:
            kept.append(res)
    if not kept:
        detail = "; ".join(refused) or "no addresses"
        raise FetchError("blocked_address", f"{host} resolves only to refused addresses: {detail}")
    return kept


def check_url(url: str, policy: AddressPolicy) -> None:
    """Refuse ``url`` unless every address its host resolves to is allowed (sync, blocking DNS).

    For destinations configured by people (webhooks). Stricter than the fetch path: one refused
    address refuses the URL, because the caller's later connection is not pinned to what we saw.
    """
    parsed = validate_url(url, policy)
    host = parsed.raw_host
    assert host is not None  # validate_url guarantees it
    if parse_ip(host) is not None:
        return
    port = parsed.port or 80
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise FetchError("invalid_url", f"{host} does not resolve: {exc}") from None
    for _family, _type, _proto, _canon, sockaddr in infos:
        ip = parse_ip(str(sockaddr[0]))
        why = "unparseable address" if ip is None else policy.refusal(ip, port)
        if why:
            raise FetchError("blocked_address", f"{host} resolves to a refused address: {why}")
