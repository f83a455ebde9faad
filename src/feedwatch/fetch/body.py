"""Body handling: capped streaming decompression, a batch's memory bound, the not-a-feed test.

libcurl hands over the bytes as sent (the fetch writes ``Accept-Encoding`` itself rather than
setting libcurl's ``ACCEPT_ENCODING`` option), so that the cap applies to what decompression
produces, chunk by chunk: a 50 KB gzip that inflates to 50 GB stops at ``max_bytes`` having
allocated at most ``max_bytes`` plus one chunk.

A batch's fetches may also share a :class:`MemoryBound`: past it, a body goes on into an
unnamed temporary file (:class:`SpilledBody`) instead of memory, and is read back when it is
parsed. The only I/O in this module is that file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zlib
from typing import BinaryIO, Final, Protocol

import structlog

from feedwatch.fetch.errors import FetchError

log = structlog.get_logger("feedwatch.fetch")

# What we advertise. Brotli is not installed, so "br" is not offered; a server sending it anyway
# gets a protocol error rather than undecodable bytes handed to the parser.
ACCEPT_ENCODING: Final = "gzip, deflate"

_CHUNK: Final = 64 * 1024
#: What the binary sniff reads of a body (``looks_binary``): of a spilled one, all it reads back.
SNIFF_BYTES: Final = 1024


class _Stage(Protocol):
    def feed(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


class _Identity:
    def feed(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class _Zlib:
    """gzip or deflate, bounded: raises too_large once one call has produced over ``limit``."""

    def __init__(self, encoding: str, limit: int) -> None:
        self._encoding = encoding
        self._limit = limit
        # 32+15 auto-detects gzip and zlib headers; "deflate" is zlib-wrapped by the RFC but often
        # sent raw, so a failure on the first bytes retries as raw deflate.
        self._wbits = 47 if encoding in ("gzip", "x-gzip") else 15
        self._obj = zlib.decompressobj(self._wbits)
        self._started = False

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        pending = data
        while pending:
            try:
                piece = self._obj.decompress(pending, _CHUNK)
            except zlib.error as exc:
                if not self._started and self._wbits == 15:
                    self._wbits = -15
                    self._obj = zlib.decompressobj(-15)
                    continue
                raise FetchError("protocol", f"bad {self._encoding} body: {exc}") from None
            self._started = True
            out += piece
            if len(out) > self._limit:  # stop inflating now, not after the whole chunk
                raise FetchError("too_large", f"body exceeds {self._limit} bytes after decoding")
            pending = self._obj.unconsumed_tail
            if self._obj.eof and self._obj.unused_data:
                # concatenated gzip members (RFC 1952 §2.2): keep going with a fresh object
                pending = self._obj.unused_data
                self._obj = zlib.decompressobj(self._wbits)
        return bytes(out)

    def flush(self) -> bytes:
        return self._obj.flush(_CHUNK)


class MemoryBound:
    """The body bytes a batch's fetches may hold in memory together (``limit``) and hold now.

    A poll batch of feeds never fetched before has no sizes to be cut by (``pipeline.tick``),
    and it holds every body it fetched until its last part is stored: 100 feeds of 1.2 MB took
    a worker to 295 MB (``benchmarks/batch_memory.py``). With a bound, a decoder whose next
    bytes would take ``held`` past ``limit`` moves what it holds, and everything after it, to
    a temporary file. A finished body in memory stays counted until the batch ends; a failed
    transfer's bytes are let go (``BodyDecoder.discard``).

    Where no temporary file can be made (``TMPDIR`` missing, read-only or full), the batch's
    bodies stay in memory, as without a bound: a poll is worth more than the bound. That is
    logged once a batch (``fetch.spill_refused``).
    """

    __slots__ = ("held", "limit", "refused")

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("MemoryBound.limit must be positive")
        self.limit = limit
        self.held = 0
        self.refused: str | None = None  # why the disk refused a body, once it did

    def admits(self, size: int) -> bool:
        """True when ``size`` more bytes may stay in memory."""
        return self.held + size <= self.limit or self.refused is not None

    def refuse(self, exc: OSError) -> None:
        self.refused = f"{type(exc).__name__}: {exc}"
        log.warning(
            "fetch.spill_refused",
            error=self.refused,
            tmpdir=tempfile.gettempdir(),
            held_bytes=self.held,
            limit_bytes=self.limit,
        )


class SpilledBody:
    """A body that went to an unnamed temporary file; :meth:`read` brings it back and closes it.

    The file has no name (``tempfile.TemporaryFile``, in ``TMPDIR``): the system frees its
    space when it is closed or its process ends, whatever happened in between.
    """

    __slots__ = ("file", "size")

    def __init__(self, file: BinaryIO, size: int) -> None:
        self.file = file
        self.size = size

    def head(self, size: int) -> bytes:
        """The first ``size`` bytes, for the not-a-feed test."""
        return os.pread(self.file.fileno(), size, 0)

    def read(self) -> bytes:
        with self.file:
            self.file.seek(0)
            return self.file.read()

    def close(self) -> None:
        self.file.close()

    def __repr__(self) -> str:
        return f"SpilledBody(size={self.size})"


class BodyDecoder:
    """Decode a ``Content-Encoding`` chain while counting; raise too_large past ``max_bytes``.

    With a ``bound`` shared by a batch's decoders, the decoded bytes stay in memory while the
    batch holds less than the bound, and go to a temporary file from the chunk that would take
    it past (:class:`MemoryBound`); :meth:`finish` then gives a :class:`SpilledBody`.
    """

    def __init__(
        self, content_encoding: str | None, max_bytes: int, bound: MemoryBound | None = None
    ) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._out = bytearray()
        self._bound = bound
        self._file: BinaryIO | None = None
        codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
        stages: list[_Stage] = []
        # Encodings are listed in the order applied, so decoding runs them backwards.
        for coding in reversed(codings):
            if coding == "identity":
                stages.append(_Identity())
            elif coding in ("gzip", "x-gzip", "deflate"):
                stages.append(_Zlib(coding, max_bytes))
            else:
                raise FetchError("protocol", f"unsupported content-encoding {coding!r}")
        self._stages = stages

    def feed(self, data: bytes) -> None:
        for stage in self._stages:
            data = stage.feed(data)
        self._append(data)

    def finish(self) -> bytes | SpilledBody:
        for i, stage in enumerate(self._stages):
            data = stage.flush()
            for later in self._stages[i + 1 :]:
                data = later.feed(data)
            self._append(data)
        # The body is the caller's now: this decoder neither holds nor counts it any more.
        file, self._file, self._bound = self._file, None, None
        if file is not None:
            try:
                file.flush()  # ``head`` reads the descriptor, under the file object's buffer
            except OSError as exc:
                _close(file)
                raise _disk_error(exc) from None
            return SpilledBody(file, self.size)
        body, self._out = bytes(self._out), bytearray()
        return body

    def discard(self) -> None:
        """Let go of a body that will not be finished (the transfer failed): its memory, which
        the bound stops counting, or its file."""
        if self._file is not None:
            _close(self._file)
            self._file = None
        elif self._bound is not None:
            self._bound.held -= len(self._out)
        self._out, self._bound = bytearray(), None

    def _append(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise FetchError("too_large", f"body exceeds {self.max_bytes} bytes after decoding")
        if self._file is not None:
            try:
                self._file.write(data)
            except OSError as exc:  # the disk filled while this body was going to it
                raise _disk_error(exc) from None
            return
        bound = self._bound
        if bound is None:
            self._out += data
        elif bound.admits(len(data)) or not self._spill(data, bound):
            self._out += data
            bound.held += len(data)

    def _spill(self, data: bytes, bound: MemoryBound) -> bool:
        """Past the batch's bound: this body goes on in a file, with what it held (whose memory
        the bound stops counting). False, the body left in memory, when the disk refuses."""
        file: BinaryIO | None = None
        try:
            file = tempfile.TemporaryFile()  # noqa: SIM115 - SpilledBody or discard closes it
            file.write(self._out)
            file.write(data)
            file.flush()  # a disk that refuses the first bytes leaves them in memory
        except OSError as exc:
            if file is not None:
                _close(file)
            bound.refuse(exc)
            return False
        self._file = file
        bound.held -= len(self._out)
        self._out = bytearray()
        return True


def _close(file: BinaryIO) -> None:
    """Close a file the disk refused: closing flushes what is buffered, which fails again."""
    with contextlib.suppress(OSError):
        file.close()


def _disk_error(exc: OSError) -> FetchError:
    return FetchError(
        "protocol", f"the body could not be kept in a temporary file ({tempfile.gettempdir()}): {exc}"
    )


def decode_body(data: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """One-shot :class:`BodyDecoder`, for tests and for callers holding a whole body."""
    decoder = BodyDecoder(content_encoding, max_bytes)
    decoder.feed(data)
    body = decoder.finish()
    assert isinstance(body, bytes)  # no bound: never spilled
    return body


# Media types that are never a feed. HTML is not here: sites serve feeds as text/html and the
# parser, not the fetcher, decides (and may discover a feed link in a page).
_NON_FEED_PREFIXES: Final = ("image/", "audio/", "video/", "font/")
_NON_FEED_TYPES: Final = frozenset(
    {
        "application/pdf",
        "application/zip",
        "application/x-zip-compressed",
        "application/vnd.ms-excel",
        "application/msword",
        "application/x-msdownload",
        "application/x-shockwave-flash",
    }
)
_BINARY_MAGIC: Final = (
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"GIF8",
    b"%PDF",
    b"PK\x03\x04",
    b"\x1f\x8b",
    b"MZ",
    b"\x7fELF",
    b"RIFF",
    b"OggS",
    b"ID3",
)


def media_type(content_type: str | None) -> str:
    """``text/xml; charset=utf-8`` → ``text/xml`` (lowercase, empty when absent)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def non_feed_type(content_type: str | None) -> bool:
    """True for media types that are clearly not a feed, decidable from the header alone."""
    mtype = media_type(content_type)
    return mtype.startswith(_NON_FEED_PREFIXES) or mtype in _NON_FEED_TYPES


def looks_binary(body: bytes) -> bool:
    """Binary sniff for untyped bodies: a known magic number or a NUL in the first 1 KB.

    UTF-16 feeds contain NULs, so a UTF-16 byte-order mark exempts the body.
    """
    head = body[:SNIFF_BYTES]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False
    return head.startswith(_BINARY_MAGIC) or b"\x00" in head


def not_a_feed_reason(content_type: str | None, body: bytes | None) -> str | None:
    """Why this response is clearly not a feed, or None; ``body`` None means headers only."""
    if non_feed_type(content_type):
        return f"content-type {media_type(content_type)!r} is not a feed"
    mtype = media_type(content_type)
    untyped = mtype in ("", "application/octet-stream", "binary/octet-stream")
    if body is not None and untyped and looks_binary(body):
        return f"binary body served as {mtype or 'no content-type'}"
    return None
