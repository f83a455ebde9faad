"""The only code that talks to feed servers: a batch of conditional GETs under hard limits.

:func:`fetch_all` runs a batch on libcurl (through pycurl): one multi handle per
``(config, policy)`` in each process and thread, driven by a synchronous loop here, with its
connections kept for the next batches. Per fetch:

- the fetch's host slot is taken first (at most ``config.per_host`` fetches in flight per host in
  a batch), then its host's turn (:class:`HostPacer`), then a global slot (``config.concurrency``);
  only then does the deadline start (``config.deadline``), which covers every redirect hop and
  every body byte, so a trickling server costs at most the deadline however slowly it drips;
- each hop's URL is checked by the address policy (:func:`~feedwatch.fetch.guard.validate_text`),
  and every address libcurl is about to connect to is checked again as it opens the socket
  (``OPENSOCKETFUNCTION``): the address checked is the one connected to, so a name that
  re-resolves to 127.0.0.1 (DNS rebinding) is caught. Redirects are followed here, not by
  libcurl, up to ``max_redirects``, and loops are cut; each hop waits its host's turn;
- the status and headers are judged when the headers end, before any body byte is taken: an
  error status, a non-feed Content-Type or a Content-Length over the cap ends the transfer there.
  Header lines are capped (:data:`MAX_LINE_SIZE`, :data:`MAX_HEADER_LINES`,
  :data:`MAX_HEADER_BYTES`);
- the body is streamed through :class:`~feedwatch.fetch.body.BodyDecoder`, which caps the
  decompressed size (libcurl is never asked to decompress); the wire size is capped too, so a
  lying Content-Length proves nothing;
- the read timeout is libcurl's low-speed check: less than a byte a second for
  ``read_timeout`` seconds, rounded up to whole seconds, ends the transfer.

Politeness: requests to one host start at least ``config.per_host_min_gap`` seconds apart across
every batch of this process (:class:`HostPacer`), so a hundred feeds on one outlet are spread
out, not fired at once. The wait for a host's turn is spent before the deadline starts and
without a global slot.

Connections are kept alive and reused, only for the same host: libcurl matches a kept
connection by scheme, host name and port, never by address, so a kept connection only carries
the next request to the server that answered on it, which controls its own feeds' answers
anyway; two names on one IP do not share. A transfer that ends early (refused when its headers
ended, cut off, timed out) closes its connection; so does one with bytes left over after its
answer (libcurl sees the excess). One on which anything arrived while it sat idle is not used:
before each request on a kept connection its socket is polled (``PREREQFUNCTION``; libcurl's
own check only looks at a connection idle for a second or more), and the request is sent on a
new connection instead. A reused connection passed the
address guard when it was opened, under the same policy (a multi handle per
``(config, policy)``). Idle connections are not reused after :data:`KEEPALIVE_TIMEOUT` and at most
:data:`MAX_IDLE` are kept per multi handle, the oldest closed first. HTTP/1.1 only; no proxy,
whatever the environment says (a proxy would bypass the address guard); no cookies.

A batch interrupted by an exception (Celery's soft time limit, a signal) closes its multi handle
and every connection in it; the next batch starts afresh. A forked child never touches its
parent's handles (they are keyed by pid). Every outcome is a :class:`FetchResult` or a
classified :class:`FetchError`; no other exception leaves :func:`fetch_all` unless the batch
itself was interrupted.
"""

from __future__ import annotations

import contextlib
import heapq
import ipaddress
import math
import os
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Final

import pycurl  # type: ignore[import-not-found,import-untyped,unused-ignore]
from yarl import URL

from feedwatch.fetch.body import (
    ACCEPT_ENCODING,
    SNIFF_BYTES,
    BodyDecoder,
    MemoryBound,
    SpilledBody,
    non_feed_type,
    not_a_feed_reason,
)
from feedwatch.fetch.errors import ErrorClass, FetchError, classify_status, parse_retry_after
from feedwatch.fetch.guard import AddressPolicy, validate_text
from feedwatch.fetch.values import FetchConfig, FetchRequest, FetchResult, Redirect

REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
ACCEPT: Final = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/rdf+xml;q=0.9,"
    " application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
# The huge-header defence: a status or header line over 8,190 bytes (nginx's and aiohttp's
# default), more than 500 lines or 64 KiB of them in one answer is a protocol error.
MAX_LINE_SIZE: Final = 8190
MAX_HEADER_LINES: Final = 500
MAX_HEADER_BYTES: Final = 64 * 1024
_MAX_MESSAGE: Final = 500
KEEPALIVE_TIMEOUT: Final = 15  # seconds an idle connection may wait for its next request
MAX_IDLE: Final = 256  # connections kept per multi handle after a batch, the longest idle closed
MAX_SESSIONS: Final = 4  # kept (config, policy) multi handles per thread; polls use one, articles another

# libcurl's result codes (curl/curl.h), by the class an operator acts on. A code not listed is a
# protocol error; a code our own callbacks caused (23, 42) is reported as what they refused.
_CURL_CLASSES: Final[dict[int, ErrorClass]] = {
    3: "invalid_url",  # URL malformed
    6: "dns",  # could not resolve host
    7: "connect",  # could not connect
    28: "timeout",  # deadline, connect timeout or the low-speed check
    35: "tls",  # handshake failed
    53: "tls",  # crypto engine
    54: "tls",
    55: "connect",  # send failed: reset, broken pipe
    56: "connect",  # receive failed: reset
    58: "tls",  # client certificate
    59: "tls",  # cipher
    60: "tls",  # peer certificate or fingerprint not verified
    64: "tls",
    66: "tls",
    77: "tls",  # CA file
    80: "tls",  # TLS shutdown
    82: "tls",  # CRL
    83: "tls",  # issuer check
    90: "tls",  # pinned key
    91: "tls",  # certificate status
    98: "tls",  # certificate chain
}
_WRITE_ERROR: Final = 23  # a callback of ours ended the transfer
_ABORTED: Final = 42  # _prereq refused a kept connection
# pycurl's constants, typed (pycurl has no type information)
_SOCKOPT_OK: Final[int] = pycurl.SOCKOPT_OK
_PREREQ_OK: Final[int] = pycurl.PREREQFUNC_OK
_PREREQ_ABORT: Final[int] = pycurl.PREREQFUNC_ABORT
_MAX_SOCKETS: Final = 8 * MAX_IDLE


class HostPacer:
    """Hands out start times at least ``gap`` apart per host, shared by every batch of a process.

    A reservation is taken under a lock and waited for outside it, so concurrent fetches to one
    host queue up in order; batches may run in threads, hence a thread lock.
    """

    MAX_HOSTS: Final = 50_000

    def __init__(self) -> None:
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def reserve(self, host: str, gap: float) -> float:
        """Seconds to wait before starting a request to ``host``."""
        if gap <= 0:
            return 0.0
        with self._lock:
            now = time.monotonic()
            if len(self._next) > self.MAX_HOSTS:  # forget hosts whose turn is long past
                self._next = {h: t for h, t in self._next.items() if t > now}
            start = max(now, self._next.get(host, 0.0))
            self._next[host] = start + gap
            return start - now


PACER = HostPacer()


def _host_key(host: str) -> str:
    return host.lower().rstrip(".")


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "…"


# Codes libcurl may report without a message.
_CURL_MESSAGES: Final[dict[int, str]] = {
    100: "an answer over libcurl's own limits (a header line over 100 KB)"
}


def classify_curl(code: int, message: str) -> FetchError:
    """The classified error of a libcurl result code and its message."""
    text = message or _CURL_MESSAGES.get(code, "libcurl error")
    return FetchError(_CURL_CLASSES.get(code, "protocol"), _short(f"{text} (curl {code})"))


def classify_exception(exc: Exception) -> FetchError:
    """Map an exception raised while fetching (ours, libcurl's, anything) to a FetchError."""
    if isinstance(exc, FetchError):
        return exc
    if isinstance(exc, pycurl.error):
        code, message = (*exc.args, 0, "")[:2]
        return classify_curl(int(code), str(message))
    text = _short(str(exc) or type(exc).__name__)
    if isinstance(exc, TimeoutError):
        return FetchError("timeout", text)
    if isinstance(exc, ssl.SSLError):
        return FetchError("tls", text)
    if isinstance(exc, socket.gaierror):
        return FetchError("dns", text)
    if isinstance(exc, OSError):  # reset, broken pipe, refused
        return FetchError("connect", f"{type(exc).__name__}: {text}")
    return FetchError("protocol", f"unexpected {type(exc).__name__}: {text}")


def _ca_options() -> list[tuple[int, str]]:
    """Verify TLS against the system's CA store (Python's view of it, honouring ``SSL_CERT_FILE``
    and ``SSL_CERT_DIR``): the libcurl bundled with pycurl's wheels looks in its build
    machine's paths otherwise."""
    paths = ssl.get_default_verify_paths()
    options = []
    if paths.cafile and os.path.isfile(paths.cafile):
        options.append((pycurl.CAINFO, paths.cafile))
    if paths.capath and os.path.isdir(paths.capath):
        options.append((pycurl.CAPATH, paths.capath))
    return options


_REQUEST_HEADERS: Final = (b"Accept: " + ACCEPT.encode(), b"Accept-Encoding: " + ACCEPT_ENCODING.encode())


def _header_value(text: str) -> bytes:
    # Header values are kept as ``_Handle._headers_end`` decoded them (UTF-8, undecodable bytes
    # escaped), so a validator is sent back byte for byte.
    return text.encode("utf-8", "surrogateescape")


class _Fetch:
    """One request's progress across its hops: what it holds and what it has done so far."""

    __slots__ = (
        "deadline",
        "first_host",
        "headers",
        "hop_host",
        "host",
        "host_held",
        "index",
        "redirects",
        "request",
        "started",
        "url",
    )

    def __init__(self, index: int, request: FetchRequest, url: str, host: str) -> None:
        self.index = index
        self.request = request
        self.url = url  # this hop's, as libcurl fetches it
        self.host = host  # its host, as written
        self.first_host = _host_key(host)
        self.hop_host: str | None = None  # a redirect's host slot, when not the first host
        self.host_held = False
        self.started: float | None = None  # set when a global slot is taken: the deadline runs
        self.deadline = 0.0
        self.redirects: list[Redirect] = []
        lines = list(_REQUEST_HEADERS)
        for name, value in (("If-None-Match", request.etag), ("If-Modified-Since", request.last_modified)):
            if value and "\r" not in value and "\n" not in value:
                lines.append(name.encode() + b": " + _header_value(value))
        self.headers = lines

    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started


class _Handle:
    """A libcurl easy handle and the answer it is receiving on the current hop.

    Its callbacks run inside libcurl's calls; whatever they refuse, or fail on, is kept in
    ``error`` and the transfer is ended (libcurl reports code 23). pycurl re-raises an exception
    that leaves a callback from ``perform`` (a signal handler's, Celery's soft time limit), which
    ends the batch: one fetch's trouble must not, so none but those leaves a callback here.
    """

    __slots__ = (
        "bound",
        "curl",
        "decoder",
        "dirty",
        "error",
        "fetch",
        "fresh",
        "header_bytes",
        "headers",
        "in_body",
        "lines",
        "max_bytes",
        "new_fds",
        "policy",
        "refused",
        "session",
        "status",
        "wire",
    )

    def __init__(self, session: _Session) -> None:
        config = session.config
        self.session = session
        self.policy = session.policy
        self.max_bytes = config.max_bytes
        self.fetch: _Fetch | None = None
        self.bound: MemoryBound | None = None
        self.fresh = False
        self._clear()
        curl = self.curl = pycurl.Curl()
        options: list[tuple[int, Any]] = [
            (pycurl.NOSIGNAL, 1),
            (pycurl.PROXY, ""),
            (pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS),
            (pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1),
            (pycurl.FOLLOWLOCATION, 0),
            (pycurl.USERAGENT, config.user_agent),
            (pycurl.CONNECTTIMEOUT_MS, max(1, round(config.connect_timeout * 1000))),
            (pycurl.LOW_SPEED_LIMIT, 1),
            (pycurl.LOW_SPEED_TIME, max(1, math.ceil(config.read_timeout))),
            (pycurl.MAXAGE_CONN, KEEPALIVE_TIMEOUT),
            (pycurl.OPENSOCKETFUNCTION, self._open_socket),
            (pycurl.SOCKOPTFUNCTION, self._new_socket),
            (pycurl.PREREQFUNCTION, self._prereq),
            (pycurl.HEADERFUNCTION, self._header),
            (pycurl.WRITEFUNCTION, self._write),
            *_CA,
        ]
        for option, value in options:
            curl.setopt(option, value)

    def _clear(self) -> None:
        self.lines: list[bytes] = []
        self.header_bytes = 0
        self.in_body = False
        self.status = 0
        self.headers: dict[str, str] = {}
        self.decoder: BodyDecoder | None = None
        self.wire = 0
        self.error: FetchError | None = None
        self.refused: list[str] = []
        self.new_fds: list[int] = []
        self.dirty = False

    def begin(self, fetch: _Fetch, timeout_ms: int, bound: MemoryBound | None, fresh: bool = False) -> None:
        """Set up the next hop of ``fetch``, its body held within the batch's ``bound``;
        ``fresh`` forbids a kept connection."""
        self.fetch = fetch
        self.bound = bound
        self._clear()
        curl = self.curl
        curl.setopt(pycurl.URL, fetch.url)
        curl.setopt(pycurl.HTTPHEADER, fetch.headers)
        curl.setopt(pycurl.TIMEOUT_MS, timeout_ms)
        if fresh != self.fresh:
            curl.setopt(pycurl.FRESH_CONNECT, int(fresh))
            self.fresh = fresh

    def _stop(self, error: FetchError) -> int:
        self.error = error
        return -1  # any count but the one given ends the transfer

    def _open_socket(self, _purpose: int, address: Any) -> Any:
        try:
            family, socktype, protocol, addr = address
            if family not in (socket.AF_INET, socket.AF_INET6):
                self.refused.append(f"address family {family}")
                return pycurl.SOCKET_BAD
            ip = ipaddress.ip_address(addr[0])
            why = f"{ip} has a zone id" if family == socket.AF_INET6 and addr[3] else None
            why = why or self.policy.refusal(ip, addr[1])
            if why:
                self.refused.append(why)
                return pycurl.SOCKET_BAD
            return socket.socket(family, socktype, protocol)
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            self.refused.append(f"unusable address {address!r}: {exc}")
            return pycurl.SOCKET_BAD

    def _new_socket(self, fd: int, _purpose: int) -> int:
        self.new_fds.append(fd)  # libcurl's descriptor, a copy of the one _open_socket made
        return _SOCKOPT_OK

    def _prereq(self, peer_ip: str, local_ip: str, peer_port: int, local_port: int) -> int:
        """Before each request: a kept connection on which anything arrived while it sat idle
        (junk, a forged second answer, a close) is not used; the hop is tried again on a new one.

        libcurl makes the same check itself, but only on a connection idle for a second or more.
        """
        try:
            sockets = self.session.sockets
            key = (peer_ip, peer_port, local_ip, local_port)
            if self.new_fds:  # this hop opened the connection: remember its descriptor
                fd = self.new_fds[0] if len(self.new_fds) == 1 else _fd_of(self.new_fds, local_port)
                if len(sockets) >= _MAX_SOCKETS:
                    sockets.clear()  # forgotten ones count as unclean: one new connection each
                sockets[key] = fd
                return _PREREQ_OK
            fd = sockets.get(key)
            if fd is None or not _quiet(fd):
                self.dirty = True
                return _PREREQ_ABORT
            return _PREREQ_OK
        except Exception:  # noqa: BLE001 - see the class docstring; unsure means unclean
            self.dirty = True
            return _PREREQ_ABORT

    def _header(self, line: bytes) -> int | None:
        try:
            self.header_bytes += len(line)
            if self.in_body:  # a chunked body's trailers: bounded, otherwise ignored
                if self.header_bytes > MAX_HEADER_BYTES:
                    return self._stop(FetchError("protocol", f"trailers over {MAX_HEADER_BYTES} bytes"))
                return None
            if len(line) > MAX_LINE_SIZE + 2:
                return self._stop(FetchError("protocol", f"header line over {MAX_LINE_SIZE} bytes"))
            if line == b"\r\n" or line == b"\n":
                return self._headers_end()
            self.lines.append(line)
            if len(self.lines) > MAX_HEADER_LINES or self.header_bytes > MAX_HEADER_BYTES:
                return self._stop(
                    FetchError(
                        "protocol", f"over {MAX_HEADER_LINES} header lines or {MAX_HEADER_BYTES} bytes"
                    )
                )
            return None
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            return self._stop(classify_exception(exc))

    def _headers_end(self) -> int | None:
        parts = self.lines[0].split(None, 2) if self.lines else []
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if 100 <= status < 200 and status != 101:  # an interim answer: the real one follows
            self.lines = []
            return None
        self.in_body = True
        self.status = status
        headers = self.headers
        for raw in self.lines[1:]:
            name, sep, value = raw.decode("utf-8", "surrogateescape").partition(":")
            if sep:
                key, value = name.strip().lower(), value.strip()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if status in REDIRECT_STATUSES:
            # Its body is not wanted: an empty one ends the answer and keeps the connection.
            return None if headers.get("content-length") == "0" else -1
        error_class = classify_status(status)
        if error_class is not None:
            reason = parts[2].decode("latin-1").strip() if len(parts) > 2 else ""
            return self._stop(
                FetchError(
                    error_class,
                    f"HTTP {status} {reason}".strip(),
                    status=status,
                    retry_after=parse_retry_after(headers.get("retry-after")),
                )
            )
        if status == 304:
            return None
        content_type = headers.get("content-type")
        if non_feed_type(content_type):  # decided by the header: do not download it
            return self._stop(FetchError("not_a_feed", f"content-type {content_type!r}", status=status))
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return self._stop(FetchError("too_large", f"Content-Length {declared} exceeds {self.max_bytes}"))
        try:
            self.decoder = BodyDecoder(headers.get("content-encoding"), self.max_bytes, self.bound)
        except FetchError as exc:
            return self._stop(exc)
        return None

    def _write(self, data: bytes) -> int | None:
        try:
            self.wire += len(data)
            # Compressed bytes count too: inflating can only grow a feed, so a wire size over
            # the cap means a decoded size over it, without spending CPU to find out.
            if self.wire > self.max_bytes:
                return self._stop(FetchError("too_large", f"body exceeds {self.max_bytes} bytes on the wire"))
            if self.decoder is None:  # a body where none was expected (a 304's)
                return None
            self.decoder.feed(data)
            return None
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            return self._stop(classify_exception(exc))


def _quiet(fd: int) -> bool:
    poll = select.poll()
    poll.register(fd, select.POLLIN | select.POLLPRI)
    return not poll.poll(0)  # readable means data, end of stream or an error: all disqualify


def _fd_of(fds: list[int], local_port: int) -> int | None:
    """Which of the sockets a hop opened (both families, racing) is bound to ``local_port``;
    the losers are closed already, and their numbers may be gone or taken again."""
    for fd in reversed(fds):
        try:
            with socket.socket(fileno=os.dup(fd)) as sock:
                if sock.getsockname()[1] == local_port:
                    return fd
        except OSError:
            continue
    return None


class _Session:
    """One ``(config, policy)``'s libcurl multi handle, its kept connections and easy handles.

    Keyed by both: a kept connection passed the guard of the policy it was opened under, and
    the easy handles carry the config's limits.
    """

    def __init__(self, config: FetchConfig, policy: AddressPolicy) -> None:
        self.config = config
        self.policy = policy
        self.multi = pycurl.CurlMulti()
        self.multi.setopt(pycurl.M_PIPELINING, 0)  # HTTP/1.1, one request at a time a connection
        self.free: list[_Handle] = []
        self.handles: dict[Any, _Handle] = {}
        # Each connection's descriptor by its addresses, as _prereq learnt it when it was opened.
        self.sockets: dict[tuple[str, int, str, int], int | None] = {}

    def take(self) -> _Handle:
        if self.free:
            return self.free.pop()
        handle = _Handle(self)
        self.handles[handle.curl] = handle
        return handle

    def give(self, handle: _Handle) -> None:
        handle.fetch = None
        handle.decoder = None
        self.free.append(handle)

    def close(self) -> None:
        """Close every handle and connection (transfers still running are abandoned)."""
        for handle in self.handles.values():
            with contextlib.suppress(pycurl.error):  # not in the multi handle
                self.multi.remove_handle(handle.curl)
            handle.curl.close()
        self.handles.clear()
        self.free.clear()
        self.multi.close()


class _Batch:
    """One batch's fetches through a session: the slots, the host queues and the loop."""

    def __init__(self, session: _Session, requests: Sequence[FetchRequest], hold_bytes: int | None) -> None:
        self.session = session
        self.bound = MemoryBound(hold_bytes) if hold_bytes is not None else None
        self.multi = session.multi
        self.config = config = session.config
        self.per_host = config.per_host
        self.results: list[FetchResult | FetchError | None] = [None] * len(requests)
        self.left = len(requests)
        self.free_slots = config.concurrency
        self.ready: deque[_Fetch] = deque()  # paced, waiting for a global slot
        self.timed: list[tuple[float, int, _Fetch]] = []  # waiting for their host's turn
        self.in_flight: dict[str, int] = {}  # fetches holding each host's slot
        self.queued: dict[str, deque[_Fetch]] = {}  # waiting for their host's slot
        # Redirected, waiting for a host's slot with their deadline running: fetch -> that host.
        self.stalled: dict[_Fetch, str] = {}
        self.added = False
        self._seq = 0
        for index, request in enumerate(requests):
            try:
                fetch = _Fetch(index, request, *validate_text(request.url, session.policy))
            except FetchError as exc:
                self._fail(_Fetch(index, request, "", ""), exc)
                continue
            self._want_host(fetch, fetch.first_host)

    def run(self) -> list[FetchResult | FetchError]:
        multi = self.multi
        multi.setopt(pycurl.M_MAXCONNECTS, MAX_IDLE)
        while self.left:
            self.added = False
            if self.timed:
                self._due(time.monotonic())
            if self.stalled:
                self._expire_stalled(time.monotonic())
            self._fill()
            while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                pass
            self._collect()
            if self.left and not self.added:
                self._fill()
                if not self.added:
                    multi.select(self._wait())
        return [r for r in self.results if r is not None]

    # -- slots and turns --------------------------------------------------------------------

    def _want_host(self, fetch: _Fetch, host: str) -> None:
        """Take ``host``'s slot for ``fetch`` (its first hop or a redirect), or queue for it."""
        if self.in_flight.get(host, 0) < self.per_host:
            self.in_flight[host] = self.in_flight.get(host, 0) + 1
            self._holds(fetch, host)
        else:
            self.queued.setdefault(host, deque()).append(fetch)
            if fetch.started is not None:
                self.stalled[fetch] = host

    def _holds(self, fetch: _Fetch, host: str) -> None:
        if fetch.started is None:
            fetch.host_held = True
        else:
            self.stalled.pop(fetch, None)
            fetch.hop_host = host
        self._pace(fetch, host)

    def _pace(self, fetch: _Fetch, host: str) -> None:
        wait = PACER.reserve(host, self.config.per_host_min_gap)
        if wait > 0:
            self._seq += 1
            heapq.heappush(self.timed, (time.monotonic() + wait, self._seq, fetch))
        else:
            self._paced(fetch)

    def _paced(self, fetch: _Fetch) -> None:
        if fetch.started is None:
            self.ready.append(fetch)  # its global slot, then its deadline, come in _fill
        else:
            self._start(fetch)

    def _due(self, now: float) -> None:
        timed = self.timed
        while timed and timed[0][0] <= now:
            self._paced(heapq.heappop(timed)[2])

    def _fill(self) -> None:
        ready = self.ready
        while ready and self.free_slots:
            fetch = ready.popleft()
            self.free_slots -= 1
            fetch.started = time.monotonic()
            fetch.deadline = fetch.started + self.config.deadline
            self._start(fetch)

    def _release_host(self, host: str) -> None:
        self.in_flight[host] -= 1
        queue = self.queued.get(host)
        if queue:
            fetch = queue.popleft()
            if not queue:  # before _holds: a hop that fails to start releases hosts again
                del self.queued[host]
            self.in_flight[host] += 1
            self._holds(fetch, host)

    def _expire_stalled(self, now: float) -> None:
        for fetch in [f for f in self.stalled if f.deadline <= now]:
            host = self.stalled.pop(fetch)
            queue = self.queued[host]
            queue.remove(fetch)
            if not queue:
                del self.queued[host]
            self._fail(fetch, FetchError("timeout", "deadline exceeded waiting for a redirect's host"))

    def _wait(self) -> float:
        """Seconds ``select`` may sleep: libcurl's next timer, the next turn, the next deadline."""
        timeout_ms = self.multi.timeout()
        wait = 1.0 if timeout_ms < 0 else timeout_ms / 1000
        now = time.monotonic()
        if self.timed:
            wait = min(wait, self.timed[0][0] - now)
        if self.stalled:
            wait = min(wait, min(f.deadline for f in self.stalled) - now)
        return max(wait, 0.0)

    # -- transfers --------------------------------------------------------------------------

    def _start(self, fetch: _Fetch, fresh: bool = False) -> None:
        left_ms = int((fetch.deadline - time.monotonic()) * 1000)
        if left_ms <= 0:
            self._fail(fetch, FetchError("timeout", f"deadline of {self.config.deadline}s exceeded"))
            return
        handle = self.session.take()
        try:
            handle.begin(fetch, left_ms, self.bound, fresh)
            self.multi.add_handle(handle.curl)
        except pycurl.error as exc:
            self.session.give(handle)
            self._fail(fetch, classify_exception(exc))
            return
        self.added = True

    def _collect(self) -> None:
        multi = self.multi
        while True:
            queued, done, failed = multi.info_read()
            for curl in done:
                self._hop_done(curl, 0, "")
            for curl, code, message in failed:
                self._hop_done(curl, code, message)
            if not queued:
                return

    def _hop_done(self, curl: Any, code: int, message: str) -> None:
        session = self.session
        handle = session.handles[curl]
        self.multi.remove_handle(curl)
        fetch = handle.fetch
        assert fetch is not None  # set while the handle is in the multi handle
        status, error = handle.status, handle.error
        if error is None and code == 0 and status not in REDIRECT_STATUSES:
            headers, wire, decoder = handle.headers, handle.wire, handle.decoder
            session.give(handle)
            try:  # the decoder's last bytes: a truncated gzip or the cap can still fail here
                body = decoder.finish() if decoder is not None else b""
            except Exception as exc:  # noqa: BLE001 - one bad feed must never sink the batch
                assert decoder is not None  # b"" does not raise
                decoder.discard()
                self._fail(fetch, classify_exception(exc))
                return
            self._succeed(fetch, status, headers, body, wire)
            return
        refused, headers, dirty = handle.refused, handle.headers, handle.dirty
        if handle.decoder is not None:  # a body cut short: the next hop, if any, starts afresh
            handle.decoder.discard()
        session.give(handle)
        if dirty and code == _ABORTED:
            self._start(fetch, fresh=True)
            return
        if error is None:
            if status in REDIRECT_STATUSES and code in (0, _WRITE_ERROR):
                self._redirect(fetch, status, headers)
                return
            if code == 7 and refused:  # every address libcurl tried was refused by the guard
                error = FetchError(
                    "blocked_address",
                    f"{fetch.host} reaches only refused addresses: {'; '.join(refused)}",
                )
            else:
                error = classify_curl(code, message)
        self._fail(fetch, error)

    def _succeed(
        self, fetch: _Fetch, status: int, headers: dict[str, str], body: bytes | SpilledBody, wire: int
    ) -> None:
        request = fetch.request
        # A body past the batch's memory bound stays in its file; the sniff reads its head.
        spilled = body if isinstance(body, SpilledBody) else None
        kept = b"" if isinstance(body, SpilledBody) else body
        if status != 304:
            head = spilled.head(SNIFF_BYTES) if spilled is not None else kept
            reason = not_a_feed_reason(headers.get("content-type"), head)
            if reason:
                if spilled is not None:
                    spilled.close()
                self._fail(fetch, FetchError("not_a_feed", reason, status=status))
                return
        self._done(
            fetch,
            FetchResult(
                request=request,
                url=fetch.url,
                status=status,
                not_modified=status == 304,
                body=kept,
                spilled=spilled,
                headers=headers,
                etag=headers.get("etag") or (request.etag if status == 304 else None),
                last_modified=headers.get("last-modified")
                or (request.last_modified if status == 304 else None),
                redirects=tuple(fetch.redirects),
                elapsed=fetch.elapsed(),
                wire_bytes=wire,
            ),
        )

    def _redirect(self, fetch: _Fetch, status: int, headers: dict[str, str]) -> None:
        try:
            target = _redirect_target(URL(fetch.url), status, headers.get("location"))
            hop = Redirect(status, fetch.url, str(target))
            fetch.redirects.append(hop)
            # Every URL visited is the source of one hop (a handful at most).
            if any(earlier.source == hop.target for earlier in fetch.redirects):
                raise FetchError("too_many_redirects", f"redirect loop back to {target}")
            if len(fetch.redirects) > self.config.max_redirects:
                raise FetchError("too_many_redirects", f"more than {self.config.max_redirects} redirects")
            # Every hop passes the same guard as the first one, and waits its host's turn.
            fetch.url, fetch.host = validate_text(target, self.session.policy)
        except FetchError as exc:
            self._fail(fetch, exc)
            return
        if fetch.hop_host is not None:
            held, fetch.hop_host = fetch.hop_host, None
            self._release_host(held)
        host = _host_key(fetch.host)
        if host == fetch.first_host:
            self._pace(fetch, host)
        else:
            self._want_host(fetch, host)

    def _fail(self, fetch: _Fetch, error: FetchError) -> None:
        error.request = fetch.request
        error.redirects = tuple(fetch.redirects)
        error.elapsed = fetch.elapsed()
        self._done(fetch, error)

    def _done(self, fetch: _Fetch, outcome: FetchResult | FetchError) -> None:
        self.results[fetch.index] = outcome
        self.left -= 1
        if fetch.started is not None:
            self.free_slots += 1
        if fetch.hop_host is not None:
            self._release_host(fetch.hop_host)
        if fetch.host_held:
            self._release_host(fetch.first_host)


def _redirect_target(url: URL, status: int, location: str | None) -> URL:
    if not location:
        raise FetchError("protocol", f"HTTP {status} without Location", status=status)
    try:
        return url.join(URL(location.strip())).with_fragment(None)
    except (ValueError, TypeError) as exc:
        raise FetchError("invalid_url", f"bad Location {location[:200]!r}: {exc}") from None


_CA: Final = _ca_options()


class _SessionsPerThread(threading.local):
    """This process's and thread's kept sessions, the least recently used closed first.

    Keyed by pid too: a Celery prefork child never touches the handles its parent made. Their
    connections' sockets are the parent's as well; the child keeps them open and unused
    (:data:`_INHERITED`), since closing them could end a TLS session under the parent.
    """

    pid: int = 0
    sessions: dict[tuple[FetchConfig, AddressPolicy], _Session] | None = None

    def get(self, config: FetchConfig, policy: AddressPolicy) -> _Session:
        if self.sessions is None or self.pid != os.getpid():
            if self.sessions:
                _INHERITED.append(self.sessions)
            self.sessions, self.pid = {}, os.getpid()
        key = (config, policy)
        session = self.sessions.pop(key, None)
        if session is None:
            if len(self.sessions) >= MAX_SESSIONS:
                self.sessions.pop(next(iter(self.sessions))).close()
            session = _Session(config, policy)
        self.sessions[key] = session  # to the end: the least recently used goes first
        return session

    def discard(self, session: _Session) -> None:
        """Forget and close ``session`` (its batch was interrupted mid-transfer)."""
        if self.sessions is not None:
            self.sessions.pop((session.config, session.policy), None)
        session.close()


_SESSIONS: Final = _SessionsPerThread()
_INHERITED: Final[list[dict[tuple[FetchConfig, AddressPolicy], _Session]]] = []


def fetch_all(
    requests: Sequence[FetchRequest],
    config: FetchConfig,
    policy: AddressPolicy,
    *,
    hold_bytes: int | None = None,
) -> list[FetchResult | FetchError]:
    """Fetch every request concurrently; results come back in the order of ``requests``.

    With ``hold_bytes``, the batch's bodies hold at most that many bytes of memory together
    (plus one chunk a transfer); the rest go to temporary files, and such a result has an empty
    ``body`` and its ``spilled`` set (``FetchResult.loaded`` reads it back).
    """
    if not requests:
        return []
    session = _SESSIONS.get(config, policy)
    try:
        return _Batch(session, requests, hold_bytes).run()
    except BaseException:
        # Interrupted (soft time limit, signal): transfers may be half done, so drop the
        # session and its connections; the next batch starts a fresh one.
        _SESSIONS.discard(session)
        raise


def fetch_one(request: FetchRequest, config: FetchConfig, policy: AddressPolicy) -> FetchResult:
    """Fetch one URL synchronously; raise its FetchError on failure."""
    (outcome,) = fetch_all([request], config, policy)
    if isinstance(outcome, FetchError):
        raise outcome
    return outcome
