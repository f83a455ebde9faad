"""Failure classification and Retry-After parsing (pure parts of the fetcher)."""

from __future__ import annotations

import socket
import ssl
from datetime import UTC, datetime

import pycurl
import pytest

from feedwatch.fetch import (
    ERROR_CLASSES,
    MAX_RETRY_AFTER,
    FetchConfig,
    FetchError,
    classify_curl,
    classify_exception,
    parse_retry_after,
)
from feedwatch.fetch.errors import classify_status
from feedwatch.settings import Settings

NOW = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("999999999", MAX_RETRY_AFTER),  # capped
        ("Mon, 01 Jan 2024 12:02:00 GMT", 120.0),
        ("Mon, 01 Jan 2024 11:00:00 GMT", 0.0),  # in the past: retry now, not negative
        ("Fri, 01 Jan 2100 00:00:00 GMT", MAX_RETRY_AFTER),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("Mon, 99 Foo 2024 xx GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (200, None),
        (203, None),
        (304, None),
        (400, "http_4xx"),
        (401, "http_4xx"),
        (403, "http_4xx"),
        (404, "http_4xx"),
        (410, "gone"),
        (429, "http_429"),
        (500, "http_5xx"),
        (502, "http_5xx"),
        (503, "http_5xx"),
        (300, "protocol"),
        (101, "protocol"),
        (999, "protocol"),
    ],
)
def test_classify_status(status: int, error_class: str | None) -> None:
    assert classify_status(status) == error_class


@pytest.mark.parametrize(
    ("exc", "error_class"),
    [
        (TimeoutError(), "timeout"),
        (socket.gaierror(-2, "Name unknown"), "dns"),
        (ConnectionRefusedError(111, "refused"), "connect"),
        (ssl.SSLError(1, "handshake"), "tls"),
        (ConnectionResetError(104, "reset"), "connect"),
        (pycurl.error(28, "Operation timed out"), "timeout"),
        (pycurl.error(60, "SSL certificate problem"), "tls"),
        (ValueError("surprise"), "protocol"),
        (RuntimeError("surprise"), "protocol"),
        (FetchError("gone", "x"), "gone"),
    ],
)
def test_classify_exception(exc: Exception, error_class: str) -> None:
    error = classify_exception(exc)
    assert error.error_class == error_class
    assert error.error_class in ERROR_CLASSES
    assert error.message


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        (6, "dns"),
        (7, "connect"),
        (28, "timeout"),
        (35, "tls"),
        (60, "tls"),
        (56, "connect"),
        (1, "protocol"),  # HTTP/0.9: a server that does not speak HTTP
        (8, "protocol"),
        (18, "protocol"),  # body shorter than its Content-Length
        (52, "protocol"),  # closed without a byte
        (100, "protocol"),  # over libcurl's own header limit
        (9999, "protocol"),  # a code this version does not know yet
    ],
)
def test_classify_curl(code: int, error_class: str) -> None:
    error = classify_curl(code, "")
    assert error.error_class == error_class
    assert error.message and f"curl {code}" in error.message


def test_unexpected_exception_message_names_the_type() -> None:
    assert "ValueError" in classify_exception(ValueError("boom")).message


def test_fetch_error_carries_its_fields() -> None:
    err = FetchError("http_429", "slow down", status=429, retry_after=30.0)
    assert (err.error_class, err.status, err.retry_after, err.redirects) == (
        "http_429",
        429,
        30.0,
        (),
    )
    assert "http_429" in str(err)


def test_config_from_settings() -> None:
    s = Settings(fetch_deadline=12, max_body_bytes=1000, per_host_concurrency=2)
    cfg = FetchConfig.from_settings(s)
    assert (cfg.deadline, cfg.max_bytes, cfg.per_host, cfg.user_agent) == (
        12,
        1000,
        2,
        s.user_agent,
    )


@pytest.mark.parametrize(
    "change", [{"deadline": 0}, {"max_bytes": 0}, {"concurrency": 0}, {"per_host": 0}, {"max_redirects": -1}]
)
def test_config_rejects_values_that_would_hang_or_fail_everything(change: dict[str, float]) -> None:
    base = FetchConfig.from_settings(Settings()).__dict__
    with pytest.raises(ValueError):
        FetchConfig(**{**base, **change})
