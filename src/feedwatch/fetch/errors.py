"""Fetch failures: one exception, classified, because operators act on the class.

Every failure of :func:`feedwatch.fetch.fetch_many` is a :class:`FetchError` whose
``error_class`` is one leaf of this tree (the branches are for reading, not for ``except``)::

    FetchError
    ├── network            the server could not be reached or did not answer in time
    │   ├── dns            name did not resolve (NXDOMAIN, resolver failure)
    │   ├── connect        TCP connect refused / reset / unreachable
    │   ├── tls            handshake or certificate failure
    │   └── timeout        connect, read or whole-fetch deadline exceeded (slowloris)
    ├── http               the server answered with a refusal
    │   ├── http_4xx       any 4xx not listed below
    │   ├── http_429       rate limited; ``retry_after`` set when the server said so
    │   ├── gone           410: the feed is gone for good
    │   └── http_5xx       server error; ``retry_after`` set when the server said so (503)
    ├── content            the server answered, but not with something we will keep
    │   ├── too_large      body over the cap, measured after decompression (gzip bomb)
    │   ├── not_a_feed     clearly not a feed (image, audio, video, PDF, zip, binary)
    │   └── protocol       malformed response: bad status line, huge headers, truncated
    │                      body, unsupported encoding, missing Location; also the class
    │                      of any unexpected exception, so nothing escapes a batch
    └── policy             we refused to go there
        ├── blocked_address   SSRF guard: non-http(s) scheme or a non-public address
        ├── invalid_url       unparseable URL, missing host
        └── too_many_redirects  more than ``max_redirects`` hops, or a redirect loop

``status`` is the HTTP status when there was one, ``retry_after`` is seconds (parsed from
``Retry-After``, delta-seconds or HTTP-date, capped at :data:`MAX_RETRY_AFTER`), ``redirects``
is the chain followed before the failure and ``elapsed`` the seconds spent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from feedwatch.fetch.values import FetchRequest, Redirect

ErrorClass = Literal[
    "timeout",
    "dns",
    "connect",
    "tls",
    "http_4xx",
    "http_5xx",
    "http_429",
    "gone",
    "too_large",
    "not_a_feed",
    "blocked_address",
    "invalid_url",
    "too_many_redirects",
    "protocol",
]
ERROR_CLASSES: Final[frozenset[str]] = frozenset(ErrorClass.__args__)  # type: ignore[attr-defined]

# A server asking for a week's pause should not silence a feed for a week: the scheduler's own
# backoff takes over after a day.
MAX_RETRY_AFTER: Final[float] = 24 * 3600.0


class FetchError(Exception):
    """One classified fetch failure (see the module docstring for the classes)."""

    def __init__(
        self,
        error_class: ErrorClass,
        message: str,
        *,
        request: FetchRequest | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        redirects: tuple[Redirect, ...] = (),
        elapsed: float = 0.0,
    ) -> None:
        super().__init__(f"{error_class}: {message}")
        self.error_class: ErrorClass = error_class
        self.message = message
        self.request = request
        self.status = status
        self.retry_after = retry_after
        self.redirects = redirects
        self.elapsed = elapsed

    def __repr__(self) -> str:
        return f"FetchError({self.error_class!r}, {self.message!r}, status={self.status!r})"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (RFC 9110 §10.2.3), clamped to [0, cap].

    ``None`` when absent or unparseable: a garbled header must not turn into "retry now".
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" dates parse naive; HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(delta, 0.0), MAX_RETRY_AFTER)


def classify_status(status: int) -> ErrorClass | None:
    """The error class of a final (non-redirect) HTTP status; ``None`` for success/304."""
    if status == 410:
        return "gone"
    if status == 429:
        return "http_429"
    if 400 <= status < 500:
        return "http_4xx"
    if 500 <= status < 600:
        return "http_5xx"
    if 200 <= status < 300 or status == 304:
        return None
    # 1xx leaking through, 300, 305, 6xx...: not something a feed server should say.
    return "protocol"
