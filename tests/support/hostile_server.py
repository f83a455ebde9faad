"""A misbehaving HTTP server on 127.0.0.1 for fetcher tests.

A raw asyncio server (no HTTP library: the point is to say things a library would refuse to
say) on its own event loop in a daemon thread. ``with HostileServer() as srv: srv.url("/feed")``.
Each path is one kind of misbehaviour; see ``ROUTES``. Handlers never block the loop, so a
slowloris on one connection does not delay the others.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
import zlib
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from types import TracebackType

FEED = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>ok</title>'
    b"<link>http://example.org/</link><description>d</description>"
    b"<item><title>Baku and Moscow talk</title><link>http://example.org/1</link></item>"
    b"</channel></rss>\n"
)
HTML = b"<!doctype html><html><head><title>not a feed</title></head><body>hi</body></html>"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(200)
ETAG = '"v1"'
LAST_MODIFIED = "Mon, 01 Jan 2024 00:00:00 GMT"
BOMB_SIZE = 64 * 1024 * 1024  # 64 MiB of zeros, about 64 KiB gzipped


def _bomb() -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
    block = bytes(1024 * 1024)
    parts = [comp.compress(block) for _ in range(BOMB_SIZE // len(block))]
    return b"".join(parts) + comp.flush()


Writer = asyncio.StreamWriter
Handler = Callable[["HostileServer", dict[str, str], Writer], Awaitable[None]]


def _head(status: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _send(
    w: Writer, status: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None
) -> None:
    hdrs = [("Content-Length", str(len(body))), ("Connection", "close"), *(headers or [])]
    w.write(_head(status, hdrs) + body)
    await w.drain()


async def feed(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    if req.get("if-none-match") == ETAG or req.get("if-modified-since") == LAST_MODIFIED:
        await _send(w, "304 Not Modified", headers=[("ETag", ETAG)])
        return
    await _send(
        w,
        "200 OK",
        FEED,
        [("Content-Type", "application/rss+xml"), ("ETag", ETAG), ("Last-Modified", LAST_MODIFIED)],
    )


async def slow_feed(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    srv.in_flight += 1
    srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
    try:
        await asyncio.sleep(0.2)  # long enough for concurrent requests to overlap
    finally:
        # Before the answer leaves: the client may start its next request as soon as it has it.
        srv.in_flight -= 1
    await _send(w, "200 OK", FEED, [("Content-Type", "application/rss+xml")])


async def gzip_feed(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    body = gzip.compress(FEED)
    await _send(w, "200 OK", body, [("Content-Type", "text/xml"), ("Content-Encoding", "gzip")])


async def deflate_feed(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    body = zlib.compress(FEED)[2:-4]  # raw deflate, as many servers wrongly send it
    await _send(w, "200 OK", body, [("Content-Type", "text/xml"), ("Content-Encoding", "deflate")])


async def gzip_bomb(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    await _send(w, "200 OK", srv.bomb, [("Content-Type", "text/xml"), ("Content-Encoding", "gzip")])


async def brotli(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    await _send(w, "200 OK", b"\x0b\x02\x80hi\x03", [("Content-Encoding", "br")])


async def endless(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    w.write(_head("200 OK", [("Content-Type", "text/xml"), ("Connection", "close")]))
    chunk = b"<item>" + b"x" * 65536 + b"</item>"
    while True:  # until the client hangs up (ConnectionError ends the handler)
        w.write(chunk)
        await w.drain()


async def lying_length_short(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    w.write(_head("200 OK", [("Content-Type", "text/xml"), ("Content-Length", "100000")]))
    w.write(FEED[:50])
    await w.drain()  # then close: far fewer bytes than promised


async def lying_length_long(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    # Claims 20 bytes, then never stops: framing by Content-Length must end the read at 20.
    w.write(_head("200 OK", [("Content-Type", "text/xml"), ("Content-Length", "20")]))
    while True:
        w.write(b"y" * 65536)
        await w.drain()


async def huge_length(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    w.write(_head("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(10**12))]))
    while True:
        w.write(b"z" * 65536)
        await w.drain()


async def slowloris(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    w.write(_head("200 OK", [("Content-Type", "text/xml"), ("Content-Length", "100000")]))
    while True:  # one byte a second: never idle long enough for a read timeout
        w.write(b"<")
        await w.drain()
        await asyncio.sleep(1)


async def slow_headers(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    w.write(b"HTTP/1.1 200 OK\r\n")
    while True:
        w.write(b"X")
        await w.drain()
        await asyncio.sleep(1)


async def loop_a(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    await _send(w, "301 Moved Permanently", headers=[("Location", "/loop-b")])


async def loop_b(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    await _send(w, "302 Found", headers=[("Location", srv.url("/loop-a"))])


async def chain(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    n = int(req["path"].rsplit("/", 1)[1])
    target = "/feed" if n <= 0 else f"/chain/{n - 1}"
    await _send(w, "301 Moved Permanently", headers=[("Location", target)])


async def to_metadata(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    await _send(w, "301 Moved Permanently", headers=[("Location", "http://169.254.169.254/latest/")])


async def to_localhost(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    # A host name (so the resolver's check is exercised) on a loopback port not in `allowed`.
    await _send(w, "302 Found", headers=[("Location", f"http://localhost:{srv.closed_port}/x")])


async def to_file(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    await _send(w, "302 Found", headers=[("Location", "file:///etc/passwd")])


async def no_location(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    await _send(w, "302 Found")


async def html(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    await _send(w, "200 OK", HTML, [("Content-Type", "text/html; charset=utf-8")])


async def image(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    await _send(w, "200 OK", PNG, [("Content-Type", "image/png")])


async def binary(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    await _send(w, "200 OK", PNG, [("Content-Type", "application/octet-stream")])


def _status(line: str, headers: list[tuple[str, str]] | None = None) -> Handler:
    async def handler(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
        await _send(w, line, b"error page", headers)

    return handler


async def retry_date(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    when = formatdate(time.time() + 600, usegmt=True)
    await _send(w, "503 Service Unavailable", b"later", [("Retry-After", when)])


async def huge_header(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    await _send(w, "200 OK", FEED, [("X-Junk", "a" * 200_000)])


async def many_headers(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    await _send(w, "200 OK", FEED, [(f"X-H{i}", "v") for i in range(5000)])


async def garbage(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    w.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    await w.drain()


async def hang_up(srv: HostileServer, req: dict[str, str], w: Writer) -> None:
    return  # close without a byte


ROUTES: dict[str, Handler] = {
    "/feed": feed,
    "/slow-feed": slow_feed,
    "/gzip-feed": gzip_feed,
    "/deflate-feed": deflate_feed,
    "/gzip-bomb": gzip_bomb,
    "/brotli": brotli,
    "/endless": endless,
    "/lying-length-short": lying_length_short,
    "/lying-length-long": lying_length_long,
    "/huge-length": huge_length,
    "/slowloris": slowloris,
    "/slow-headers": slow_headers,
    "/loop-a": loop_a,
    "/loop-b": loop_b,
    "/chain": chain,
    "/to-metadata": to_metadata,
    "/to-localhost": to_localhost,
    "/to-file": to_file,
    "/no-location": no_location,
    "/html": html,
    "/image": image,
    "/binary": binary,
    "/gone": _status("410 Gone"),
    "/not-found": _status("404 Not Found"),
    "/rate-limited": _status("429 Too Many Requests", [("Retry-After", "120")]),
    "/server-error": _status("500 Internal Server Error"),
    "/unavailable": retry_date,
    "/huge-header": huge_header,
    "/many-headers": many_headers,
    "/garbage": garbage,
    "/hang-up": hang_up,
}


class HostileServer:
    """Start on enter, stop on exit; ``port`` is the bound port, ``closed_port`` refuses."""

    def __init__(self) -> None:
        self.bomb = _bomb()
        self.port = 0
        self.closed_port = 0
        self.requests: list[dict[str, str]] = []
        self.in_flight = 0  # /slow-feed handlers running now, and the most seen at once
        self.max_in_flight = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> HostileServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        # A port that was bound and released: nothing listens there, so connecting is refused.
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        self.closed_port = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            req = await self._read_request(reader)
            self.requests.append(req)
            path = req["path"]
            route = ROUTES.get(path) or ROUTES.get("/" + path.split("/")[1], _status("404 Nope"))
            await route(self, req, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client hung up or sent junk: exactly what a hostile peer gets
        except asyncio.CancelledError:
            pass  # server stopping; returning quietly keeps asyncio's callback from logging it
        finally:
            self._tasks.discard(task)
            writer.close()

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> dict[str, str]:
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        req = {"method": method, "path": target.split("?", 1)[0]}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                req[name.strip().lower()] = value.strip()
        return req
