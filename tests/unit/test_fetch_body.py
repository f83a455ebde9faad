"""Capped decompression, a batch's memory bound and the not-a-feed test (the fetcher's body
handling, without a transfer)."""

from __future__ import annotations

import errno
import gzip
import tempfile
import zlib
from pathlib import Path
from typing import Any

import pytest
import structlog

from feedwatch.fetch import FetchError, decode_body
from feedwatch.fetch import body as body_module
from feedwatch.fetch.body import BodyDecoder, MemoryBound, SpilledBody, looks_binary, not_a_feed_reason

FEED = b"<?xml version='1.0'?><rss><channel><title>t</title></channel></rss>" * 20


def _raw_deflate(data: bytes) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    return comp.compress(data) + comp.flush()


# Named, not by their bytes: a gzip header holds the time it was made, and xdist's workers must
# collect the same test ids.
@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        pytest.param(None, FEED, id="none"),
        pytest.param("identity", FEED, id="identity"),
        pytest.param("gzip", gzip.compress(FEED), id="gzip"),
        pytest.param("x-gzip", gzip.compress(FEED), id="x-gzip"),
        pytest.param("GZIP", gzip.compress(FEED), id="GZIP"),
        pytest.param("deflate", zlib.compress(FEED), id="zlib"),  # zlib-wrapped, per the RFC
        pytest.param("deflate", _raw_deflate(FEED), id="raw-deflate"),  # raw, as many servers send it
        pytest.param("gzip, gzip", gzip.compress(gzip.compress(FEED)), id="gzip-twice"),
        pytest.param("gzip", gzip.compress(FEED[:500]) + gzip.compress(FEED[500:]), id="two-members"),
    ],
)
def test_decodes(encoding: str | None, encoded: bytes) -> None:
    assert decode_body(encoded, encoding, 1 << 20) == FEED


def test_decodes_when_fed_byte_by_byte() -> None:
    decoder = BodyDecoder("gzip", 1 << 20)
    for b in gzip.compress(FEED):
        decoder.feed(bytes([b]))
    assert decoder.finish() == FEED


@pytest.mark.parametrize("encoding", [None, "gzip", "deflate", "gzip, gzip"])
def test_cap_applies_after_decoding(encoding: str | None) -> None:
    raw = bytes(10 * 1024 * 1024)
    encoded = raw
    for coding in (encoding or "").split(","):
        if coding.strip() == "gzip":
            encoded = gzip.compress(encoded)
        elif coding.strip() == "deflate":
            encoded = zlib.compress(encoded)
    with pytest.raises(FetchError) as info:
        decode_body(encoded, encoding, 1024 * 1024)
    assert info.value.error_class == "too_large"


def test_gzip_bomb_stops_without_inflating_everything() -> None:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    bomb = b"".join(comp.compress(block) for _ in range(512)) + comp.flush()  # 512 MiB inflated
    decoder = BodyDecoder("gzip", 1 << 20)
    with pytest.raises(FetchError, match="too_large"):
        decoder.feed(bomb)
    assert decoder.size <= 1 << 20


def test_exact_cap_is_allowed() -> None:
    assert len(decode_body(gzip.compress(b"a" * 1000), "gzip", 1000)) == 1000


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, br"])
def test_unsupported_encoding_is_protocol(encoding: str) -> None:
    with pytest.raises(FetchError, match="protocol"):
        decode_body(b"x", encoding, 100)


def test_corrupt_gzip_is_protocol() -> None:
    with pytest.raises(FetchError, match="protocol"):
        decode_body(b"\x1f\x8b\x08\x00garbage-garbage", "gzip", 100)


PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


@pytest.mark.parametrize(
    ("content_type", "body", "refused"),
    [
        ("application/rss+xml", FEED, False),
        ("text/xml; charset=utf-8", FEED, False),
        ("text/html", b"<html></html>", False),  # HTML is the parser's call
        ("application/json", b'{"version": "https://jsonfeed.org/version/1.1"}', False),
        ("application/octet-stream", FEED, False),  # mislabelled but textual
        (None, FEED, False),
        ("image/png", PNG, True),
        ("IMAGE/JPEG", b"\xff\xd8\xff", True),
        ("audio/mpeg", b"ID3", True),
        ("video/mp4", b"....", True),
        ("application/pdf", b"%PDF-1.7", True),
        ("application/zip", b"PK\x03\x04", True),
        ("application/octet-stream", PNG, True),
        ("application/octet-stream", b"abc\x00def", True),
        (None, b"%PDF-1.4 ...", True),
        ("application/octet-stream", "<rss/>".encode("utf-16"), False),  # BOM: UTF-16 text
    ],
)
def test_not_a_feed(content_type: str | None, body: bytes, refused: bool) -> None:
    assert (not_a_feed_reason(content_type, body) is not None) is refused


def test_binary_sniff_ignores_text() -> None:
    assert not looks_binary("Азербайджан и Россия".encode())


def _feed_in_chunks(decoder: BodyDecoder, data: bytes, bound: MemoryBound, size: int = 500) -> None:
    for start in range(0, len(data), size):
        decoder.feed(data[start : start + size])
        assert 0 <= bound.held <= bound.limit


def test_a_bound_keeps_bodies_in_memory_until_the_next_chunk_would_pass_it() -> None:
    """Two transfers share a bound of 3,000 bytes: the first body (2,000) stays in memory; the
    second's third chunk would take the batch to 3,500, so that body moves to a file with what
    it held, and the bound counts only the first body. Both come back whole."""
    bound = MemoryBound(3000)
    first, second = BodyDecoder(None, 1 << 20, bound), BodyDecoder(None, 1 << 20, bound)
    one, two = bytes(range(200)) * 10, bytes(reversed(range(200))) * 10
    _feed_in_chunks(first, one, bound)
    assert bound.held == 2000
    second.feed(two[:500])
    second.feed(two[500:1000])
    assert bound.held == 3000  # exactly at the bound is still memory
    second.feed(two[1000:1500])
    assert bound.held == 2000
    second.feed(two[1500:])
    assert bound.held == 2000
    kept, spilled = first.finish(), second.finish()
    assert kept == one
    assert isinstance(spilled, SpilledBody) and spilled.size == 2000
    assert spilled.head(4) == two[:4]
    assert spilled.read() == two and spilled.file.closed
    assert bound.held == 2000  # a finished body in memory is the batch's until it ends


def test_a_body_past_the_bound_from_its_first_chunk_is_decoded_into_its_file() -> None:
    """The bound counts decoded bytes: a gzip body goes to its file inflated, and reads back
    as the unbounded decoder gives it."""
    bound = MemoryBound(100)
    decoder = BodyDecoder("gzip", 1 << 20, bound)
    _feed_in_chunks(decoder, gzip.compress(FEED), bound, size=64)
    spilled = decoder.finish()
    assert isinstance(spilled, SpilledBody) and spilled.size == len(FEED)
    assert bound.held == 0
    assert spilled.read() == FEED == decode_body(gzip.compress(FEED), "gzip", 1 << 20)


def test_the_cap_still_applies_to_a_spilled_body() -> None:
    bound = MemoryBound(10)
    decoder = BodyDecoder(None, 1000, bound)
    decoder.feed(b"x" * 600)
    with pytest.raises(FetchError) as info:
        decoder.feed(b"x" * 600)
    assert info.value.error_class == "too_large"
    decoder.discard()


def test_a_discarded_body_gives_back_its_memory_or_closes_its_file() -> None:
    bound = MemoryBound(1000)
    in_memory, spilling = BodyDecoder(None, 1 << 20, bound), BodyDecoder(None, 1 << 20, bound)
    in_memory.feed(b"a" * 600)
    spilling.feed(b"b" * 600)  # 1,200 > 1,000: to a file
    file = spilling._file
    assert bound.held == 600 and file is not None
    spilling.discard()
    assert file.closed and bound.held == 600
    in_memory.discard()
    assert bound.held == 0


def test_a_finished_body_is_the_callers_and_discard_leaves_it_alone() -> None:
    bound = MemoryBound(1000)
    decoder = BodyDecoder(None, 1 << 20, bound)
    decoder.feed(b"a" * 600)
    body = decoder.finish()
    decoder.discard()
    assert body == b"a" * 600 and bound.held == 600


def test_a_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        MemoryBound(0)


@pytest.mark.parametrize("refusal", ["no-tmpdir", "disk-full"])
def test_a_disk_that_refuses_the_first_bytes_leaves_the_batchs_bodies_in_memory(
    refusal: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``TMPDIR`` missing (a read-only container), or a disk with no room (``/dev/full``, a real
    ENOSPC): the body that would have gone to a file stays in memory, whole, and so do the
    batch's later bodies, as without a bound. Logged once, with the directory."""
    if refusal == "no-tmpdir":
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    else:
        monkeypatch.setattr(tempfile, "TemporaryFile", lambda: open("/dev/full", "w+b"))  # noqa: SIM115
    capture = structlog.testing.LogCapture()
    monkeypatch.setattr(body_module, "log", structlog.wrap_logger(None, processors=[capture]))
    bound = MemoryBound(1000)
    first, second = BodyDecoder(None, 1 << 20, bound), BodyDecoder(None, 1 << 20, bound)
    first.feed(b"a" * 800)
    second.feed(b"b" * 800)  # past the bound: the disk refuses, so memory
    second.feed(b"c" * 800)
    assert bound.refused is not None and bound.held == 2400
    assert first.finish() == b"a" * 800 and second.finish() == b"b" * 800 + b"c" * 800
    assert [e["event"] for e in capture.entries] == ["fetch.spill_refused"]
    assert capture.entries[0]["limit_bytes"] == 1000 and capture.entries[0]["error"]


_TEMPORARY_FILE = tempfile.TemporaryFile


class _FillingFile:
    """A real temporary file that takes ``room`` bytes and then fails as a full disk does."""

    def __init__(self, room: int) -> None:
        self._file = _TEMPORARY_FILE()
        self._room = room

    def write(self, data: Any) -> int:
        self._room -= len(data)
        if self._room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._file.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def __enter__(self) -> _FillingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


def test_a_disk_that_fills_under_a_spilled_body_fails_that_fetch_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The disk took the body's first bytes and then filled: that body cannot be whole, so its
    fetch fails (classified ``protocol``, saying why), its file is closed, and the next body
    past the bound still tries the disk."""
    files: list[_FillingFile] = []

    def filling() -> _FillingFile:
        files.append(_FillingFile(room=1500))
        return files[-1]

    monkeypatch.setattr(tempfile, "TemporaryFile", filling)
    bound = MemoryBound(100)
    decoder = BodyDecoder(None, 1 << 20, bound)
    decoder.feed(b"x" * 1000)  # to its file
    with pytest.raises(FetchError) as info:
        decoder.feed(b"x" * 1000)
    assert info.value.error_class == "protocol" and "temporary file" in info.value.message
    assert "No space left" in info.value.message
    decoder.discard()
    assert files[0].closed and bound.refused is None
    later = BodyDecoder(None, 1 << 20, bound)
    later.feed(b"y" * 200)
    spilled = later.finish()
    assert isinstance(spilled, SpilledBody) and spilled.read() == b"y" * 200
