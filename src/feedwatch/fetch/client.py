"""The only code that talks to feed servers: a batch of conditional GETs under hard limits.

:func:`fetch_all` runs a batch on this process's event loop with a session kept for the next
batches of the same ``(config, policy)``; :func:`fetch_many` alone owns one session for one batch.
Per fetch:

- the caller's global and per-host slots are taken first, then a deadline starts
  (``config.deadline``) that covers every redirect hop and every body byte, so a trickling
  server costs at most the deadline however slowly it drips;
- each hop is checked by the address policy (literal IPs here, host names in the resolver),
  redirects are followed by hand up to ``max_redirects`` and loops are cut;
- the body is streamed through :class:`~feedwatch.fetch.body.BodyDecoder`, which caps the
  decompressed size; the wire size is capped too, so a lying Content-Length proves nothing.

Politeness: at most ``config.per_host`` fetches in flight per host in a batch, and requests to
one host start at least ``config.per_host_min_gap`` seconds apart across every batch of this
process (:class:`HostPacer`), so a hundred feeds on one outlet are spread out, not fired at once.
The wait for a host's turn is spent before the deadline starts and without a global slot.

Connections are kept alive and reused, only for the same host: aiohttp pools them by host
name, port and TLS settings (its ``ConnectionKey``), never by address, so a kept connection only
carries the next request to the server that answered on it, which controls its own feeds' answers
anyway; two names on one IP do not share. A connection goes back to the pool only once its
answer arrived to the last byte (aiohttp hands it back then, read or not: it is between two
messages); a response refused or failed before that closes it (:func:`_follow`), aiohttp closes
one with bytes left over or ``Connection: close``, and one on which anything arrived while it
was idle is not reused (:class:`_KeptConnector`). A reused connection passed the address guard
when it was opened, under the same policy (a session per ``(config, policy)``).
Idle connections are closed after :data:`KEEPALIVE_TIMEOUT` and beyond :data:`MAX_IDLE` per
session, oldest first; sessions die with their loop (a fork, an interrupted batch, exit).
Every outcome is a :class:`FetchResult` or a classified :class:`FetchError`; no exception
other than cancellation leaves :func:`fetch_many`.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import select
import socket
import ssl
import threading
import time
from collections import defaultdict
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import aiohttp
from aiohttp.client_reqrep import ConnectionKey
from aiohttp.connector import Connection
from aiohttp.tracing import Trace
from yarl import URL

from feedwatch.fetch.body import ACCEPT_ENCODING, BodyDecoder, non_feed_type, not_a_feed_reason
from feedwatch.fetch.errors import FetchError, classify_status, parse_retry_after
from feedwatch.fetch.guard import AddressPolicy, GuardedResolver, validate_url
from feedwatch.fetch.values import FetchConfig, FetchRequest, FetchResult, Redirect

REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
ACCEPT: Final = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/rdf+xml;q=0.9,"
    " application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
# aiohttp's own defaults, pinned here because they are our huge-header defence.
MAX_LINE_SIZE: Final = 8190
MAX_FIELD_SIZE: Final = 8190
_MAX_MESSAGE: Final = 500
KEEPALIVE_TIMEOUT: Final = 15.0  # seconds an idle connection stays in the pool
MAX_IDLE: Final = 256  # idle connections kept per session after a batch, the longest idle closed
MAX_SESSIONS: Final = 4  # kept (config, policy) sessions per loop; polls use one, articles another
_T = TypeVar("_T")


@dataclass
class _Progress:
    """What one fetch has done so far, so a failure can report it."""

    redirects: list[Redirect] = field(default_factory=list)
    started: float | None = None

    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started


class HostPacer:
    """Hands out start times at least ``gap`` apart per host, shared by every batch of a process.

    A reservation is taken under a lock and waited for outside it, so concurrent fetches to one
    host queue up in order; ``fetch_all`` may run batches in threads, hence a thread lock.
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


class _Batch:
    """One session and the concurrency limits shared by every fetch of a batch."""

    def __init__(self, session: aiohttp.ClientSession, config: FetchConfig, policy: AddressPolicy) -> None:
        self.session = session
        self.config = config
        self.policy = policy
        self.slots = asyncio.Semaphore(config.concurrency)
        self.hosts: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(config.per_host)
        )

    async def pace(self, host: str) -> None:
        wait = PACER.reserve(host, self.config.per_host_min_gap)
        if wait > 0:  # a turn that is due now costs no trip through the loop
            await asyncio.sleep(wait)

    def host_slot(self, url: URL, held: str | None = None) -> AbstractAsyncContextManager[Any]:
        """The host's slot, to hold with ``async with``; none when ``held`` is its host already."""
        key = _host_key(url)
        return _NO_SLOT if key == held else self.hosts[key]


#: A slot that is no slot: a redirect hop on the host whose slot the fetch holds already.
_NO_SLOT: Final = nullcontext()


def _host_key(url: URL) -> str:
    return (url.raw_host or "").lower().rstrip(".")


class _KeptConnector(aiohttp.TCPConnector):
    """aiohttp's connector, but a pooled connection on which anything arrived while idle is dropped.

    aiohttp reads an idle connection only while the loop runs, and ours sleeps between batches:
    bytes a server sent after its answer (junk, a forged second response, its FIN) would be read
    as the next request's answer. A zero-timeout poll before reuse sees them; the connection is
    closed and a fresh one made (Go's transport reads idle connections for the same reason).
    """

    async def _get(self, key: ConnectionKey, traces: list[Trace]) -> Connection | None:
        while (conn := await super()._get(key, traces)) is not None:
            if _quiet(conn):
                return conn
            conn.close()
        return None


def _quiet(conn: Connection) -> bool:
    proto = conn.protocol
    sock = conn.transport.get_extra_info("socket") if conn.transport is not None else None
    if proto is None or proto.should_close or sock is None:
        return False
    poll = select.poll()
    poll.register(sock.fileno(), select.POLLIN | select.POLLPRI)
    return not poll.poll(0)  # readable means data, end of stream or an error: all disqualify


def _new_session(config: FetchConfig, policy: AddressPolicy) -> aiohttp.ClientSession:
    connector = _KeptConnector(
        resolver=GuardedResolver(policy),
        limit=config.concurrency,
        limit_per_host=0,  # our per-host semaphores decide, before the deadline starts
        keepalive_timeout=KEEPALIVE_TIMEOUT,
        family=socket.AF_UNSPEC,
    )
    timeout = aiohttp.ClientTimeout(
        total=None,  # the per-fetch deadline is ours, see _fetch
        connect=config.connect_timeout,
        sock_connect=config.connect_timeout,
        sock_read=config.read_timeout,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
        headers={
            "User-Agent": config.user_agent,
            "Accept": ACCEPT,
            "Accept-Encoding": ACCEPT_ENCODING,
        },
        cookie_jar=aiohttp.DummyCookieJar(),  # no state may leak from one feed to another
        trust_env=False,  # proxies from the environment would bypass the address guard
        max_line_size=MAX_LINE_SIZE,
        max_field_size=MAX_FIELD_SIZE,
    )


class _Sessions:
    """One loop's kept sessions, one per ``(config, policy)``, the least recently used closed first.

    Keyed by both: a pooled connection passed the guard of the policy it was opened under, and
    the connector carries the config's limits and timeouts.
    """

    def __init__(self) -> None:
        self._by_key: dict[tuple[FetchConfig, AddressPolicy], aiohttp.ClientSession] = {}

    async def get(self, config: FetchConfig, policy: AddressPolicy) -> aiohttp.ClientSession:
        key = (config, policy)
        session = self._by_key.pop(key, None)
        if session is None or session.closed:
            if len(self._by_key) >= MAX_SESSIONS:
                await self._by_key.pop(next(iter(self._by_key))).close()
            session = _new_session(config, policy)
        self._by_key[key] = session  # to the end: the least recently used goes first
        return session

    async def close(self) -> None:
        sessions, self._by_key = list(self._by_key.values()), {}
        for session in sessions:
            await session.close()


def _trim_idle(session: aiohttp.ClientSession, keep: int) -> None:
    """Close the longest-idle pooled connections beyond ``keep`` (aiohttp bounds only their age)."""
    # aiohttp has no public bound on its idle pool: this reads the connector's own table
    # (tests/integration/test_fetch_keepalive.py fails if that table changes shape).
    pool = getattr(session.connector, "_conns", None)
    if not pool or sum(map(len, pool.values())) <= keep:
        return
    idle = sorted(
        ((since, key, proto) for key, conns in pool.items() for proto, since in conns),
        key=lambda item: item[0],
    )
    for since, key, proto in idle[: len(idle) - keep]:
        pool[key].remove((proto, since))
        if not pool[key]:
            del pool[key]
        proto.close()


async def fetch_many(
    requests: Sequence[FetchRequest], config: FetchConfig, policy: AddressPolicy
) -> list[FetchResult | FetchError]:
    """Fetch every request concurrently; results come back in the order of ``requests``."""
    if not requests:
        return []
    async with _new_session(config, policy) as session:
        return await _fetch_batch(session, requests, config, policy)


async def _fetch_kept(
    sessions: _Sessions, requests: Sequence[FetchRequest], config: FetchConfig, policy: AddressPolicy
) -> list[FetchResult | FetchError]:
    """:func:`fetch_many` on a session kept for the next batches of this loop."""
    if not requests:
        return []
    session = await sessions.get(config, policy)
    try:
        return await _fetch_batch(session, requests, config, policy)
    finally:
        _trim_idle(session, MAX_IDLE)


async def _fetch_batch(
    session: aiohttp.ClientSession,
    requests: Sequence[FetchRequest],
    config: FetchConfig,
    policy: AddressPolicy,
) -> list[FetchResult | FetchError]:
    batch = _Batch(session, config, policy)
    return list(await asyncio.gather(*(_fetch_classified(batch, r) for r in requests)))


async def _fetch_classified(batch: _Batch, request: FetchRequest) -> FetchResult | FetchError:
    progress = _Progress()
    try:
        return await _fetch(batch, request, progress)
    except Exception as exc:  # noqa: BLE001 - one bad feed must never sink the batch
        error = classify_exception(exc)
        error.request = request
        error.redirects = tuple(progress.redirects)
        error.elapsed = progress.elapsed()
        return error


async def _fetch(batch: _Batch, request: FetchRequest, progress: _Progress) -> FetchResult:
    url = validate_url(request.url, batch.policy)
    first_host = _host_key(url)
    # Host slot and the host's turn before the global slot: feeds queued behind a busy host
    # hold no global slot, and their deadline has not started.
    async with batch.host_slot(url):
        await batch.pace(first_host)
        async with batch.slots:
            progress.started = time.monotonic()
            async with asyncio.timeout(batch.config.deadline):
                return await _follow(batch, request, url, first_host, progress)


def _request_headers(request: FetchRequest) -> dict[str, str]:
    headers: dict[str, str] = {}
    if request.etag:
        headers["If-None-Match"] = request.etag
    if request.last_modified:
        headers["If-Modified-Since"] = request.last_modified
    return headers


async def _follow(
    batch: _Batch, request: FetchRequest, url: URL, first_host: str, progress: _Progress
) -> FetchResult:
    seen = {str(url)}
    headers = _request_headers(request)
    while True:
        async with (
            batch.host_slot(url, held=first_host),
            batch.session.get(url, headers=headers, allow_redirects=False) as resp,
        ):
            # Leaving the block releases the connection to the pool: one whose answer did not
            # arrive to its last byte (refused, cut off, deadline) is closed here instead.
            try:
                if resp.status not in REDIRECT_STATUSES:
                    return await _final(batch, request, url, resp, progress)
                target = _redirect_target(url, resp)
            except BaseException:
                resp.close()
                raise
            if not resp.content.at_eof():  # a redirect's body is not read
                resp.close()
        progress.redirects.append(Redirect(resp.status, str(url), str(target)))
        if str(target) in seen:
            raise FetchError("too_many_redirects", f"redirect loop back to {target}")
        if len(progress.redirects) > batch.config.max_redirects:
            raise FetchError("too_many_redirects", f"more than {batch.config.max_redirects} redirects")
        seen.add(str(target))
        # Every hop passes the same guard as the first one, and waits its host's turn.
        url = validate_url(target, batch.policy)
        await batch.pace(_host_key(url))


def _redirect_target(url: URL, resp: aiohttp.ClientResponse) -> URL:
    location = resp.headers.get("Location")
    if not location:
        raise FetchError("protocol", f"HTTP {resp.status} without Location", status=resp.status)
    try:
        return url.join(URL(location.strip())).with_fragment(None)
    except (ValueError, TypeError) as exc:
        raise FetchError("invalid_url", f"bad Location {location[:200]!r}: {exc}") from None


def _headers(resp: aiohttp.ClientResponse) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in resp.headers.items():
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


async def _final(
    batch: _Batch,
    request: FetchRequest,
    url: URL,
    resp: aiohttp.ClientResponse,
    progress: _Progress,
) -> FetchResult:
    headers = _headers(resp)
    status = resp.status
    error_class = classify_status(status)
    if error_class is not None:
        raise FetchError(
            error_class,
            f"HTTP {status} {resp.reason or ''}".strip(),
            status=status,
            retry_after=parse_retry_after(headers.get("retry-after")),
        )
    body, wire = b"", 0
    if status != 304:
        content_type = headers.get("content-type")
        if non_feed_type(content_type):  # decided by the header: do not download it
            raise FetchError("not_a_feed", f"content-type {content_type!r}", status=status)
        body, wire = await _read_body(resp, headers, batch.config.max_bytes)
        reason = not_a_feed_reason(content_type, body)
        if reason:
            raise FetchError("not_a_feed", reason, status=status)
    return FetchResult(
        request=request,
        url=str(url),
        status=status,
        not_modified=status == 304,
        body=body,
        headers=headers,
        etag=headers.get("etag") or (request.etag if status == 304 else None),
        last_modified=headers.get("last-modified") or (request.last_modified if status == 304 else None),
        redirects=tuple(progress.redirects),
        elapsed=progress.elapsed(),
        wire_bytes=wire,
    )


async def _read_body(
    resp: aiohttp.ClientResponse, headers: dict[str, str], max_bytes: int
) -> tuple[bytes, int]:
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchError("too_large", f"Content-Length {declared} exceeds {max_bytes}")
    decoder = BodyDecoder(headers.get("content-encoding"), max_bytes)
    wire = 0
    async for chunk in resp.content.iter_any():
        wire += len(chunk)
        # Compressed bytes count too: inflating can only grow a feed, so a wire size over the
        # cap means a decoded size over it, without spending CPU to find out.
        if wire > max_bytes:
            raise FetchError("too_large", f"body exceeds {max_bytes} bytes on the wire")
        decoder.feed(chunk)
    return decoder.finish(), wire


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "…"


def classify_exception(exc: Exception) -> FetchError:
    """Map any exception raised while fetching to a classified FetchError."""
    if isinstance(exc, FetchError):
        return exc
    if isinstance(exc, TimeoutError):  # our deadline, aiohttp's connect and read timeouts
        return FetchError("timeout", _short(exc) if str(exc) else "deadline or timeout exceeded")
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return FetchError("tls", _short(exc))
    if isinstance(exc, aiohttp.ClientConnectorError):
        # The DNS subclass only exists from aiohttp 3.11; the wrapped gaierror works everywhere.
        if isinstance(exc.os_error, socket.gaierror):
            return FetchError("dns", _short(exc))
        return FetchError("connect", _short(exc))
    if isinstance(exc, aiohttp.InvalidURL):
        return FetchError("invalid_url", _short(exc))
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return FetchError("protocol", f"server disconnected: {_short(exc)}")
    if isinstance(exc, aiohttp.ClientResponseError):  # unparseable status line or headers
        return FetchError("protocol", exc.message[:_MAX_MESSAGE] or _short(exc))
    if isinstance(exc, aiohttp.ClientPayloadError):
        return FetchError("protocol", f"bad body: {_short(exc)}")
    if isinstance(exc, OSError):  # includes ClientOSError: reset or broken pipe mid-exchange
        return FetchError("connect", f"{type(exc).__name__}: {_short(exc)}")
    if isinstance(exc, aiohttp.ClientError):
        return FetchError("protocol", f"{type(exc).__name__}: {_short(exc)}")
    return FetchError("protocol", f"unexpected {type(exc).__name__}: {_short(exc)}")


class _LoopPerThread(threading.local):
    """One event loop per process and thread, made on first use and again after a fork.

    ``asyncio.run`` per batch built a loop and tore down its executor threads every time (16 % of
    a poll's CPU went to fetch). The loop is keyed by pid: a Celery prefork child never runs the
    loop its parent made, nor reuses its connections. The loop's kept sessions
    (:class:`_Sessions`) live and die with it.
    """

    pid: int = 0
    runner: asyncio.Runner | None = None
    sessions: _Sessions | None = None

    def get(self) -> asyncio.Runner:
        if self.runner is None or self.pid != os.getpid():
            # asyncio's own loop, not uvloop: uvloop swallowed Celery's soft time limit (raised from
            # a signal handler) inside its loop, so a poison feed's poll was killed by the hard
            # limit instead (tests/faults/test_poison_feed.py). It saved ~5-10 % of a 304's CPU.
            self.runner, self.pid, self.sessions = asyncio.Runner(), os.getpid(), _Sessions()
            atexit.register(_shut_down, self.runner, self.sessions, self.pid)
        return self.runner

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        runner = self.get()
        try:
            return runner.run(coro)
        except BaseException:
            # A batch interrupted (soft time limit, signal) may leave fetches running: cancel them,
            # close the kept connections, and start the next batch on a fresh loop.
            sessions, self.runner, self.sessions = self.sessions, None, None
            _shut_down(runner, sessions, self.pid)
            raise

    def fetch(
        self, requests: Sequence[FetchRequest], config: FetchConfig, policy: AddressPolicy
    ) -> list[FetchResult | FetchError]:
        self.get()
        assert self.sessions is not None  # made with the runner
        return self.run(_fetch_kept(self.sessions, requests, config, policy))


def _shut_down(runner: asyncio.Runner, sessions: _Sessions | None, pid: int) -> None:
    """Cancel what is left on ``runner``'s loop, close its kept sessions, close the loop."""
    if pid != os.getpid():
        return  # a forked child's copy of its parent's loop: the sockets are the parent's
    try:
        runner.get_loop()
    except RuntimeError:
        return  # closed already (an interrupted batch's runner, at exit)
    try:
        runner.run(_cancel_rest_and_close(sessions))
    except Exception:  # noqa: BLE001, S110 - best effort: a dead socket must not stop the close
        pass
    finally:
        runner.close()


async def _cancel_rest_and_close(sessions: _Sessions | None) -> None:
    rest = asyncio.all_tasks() - {asyncio.current_task()}
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)
    if sessions is not None:
        await sessions.close()


_LOOPS: Final = _LoopPerThread()


def fetch_all(
    requests: Sequence[FetchRequest], config: FetchConfig, policy: AddressPolicy
) -> list[FetchResult | FetchError]:
    """Sync :func:`fetch_many` on this process's event loop and its kept connections."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _LOOPS.fetch(requests, config, policy)
    # Called from code already inside a loop: a thread can run only one, so use another thread.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="feedwatch-fetch") as pool:
        return pool.submit(asyncio.run, fetch_many(requests, config, policy)).result()


def fetch_one(request: FetchRequest, config: FetchConfig, policy: AddressPolicy) -> FetchResult:
    """Fetch one URL synchronously; raise its FetchError on failure."""
    (outcome,) = fetch_all([request], config, policy)
    if isinstance(outcome, FetchError):
        raise outcome
    return outcome
