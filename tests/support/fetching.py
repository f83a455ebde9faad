"""The fetch limits tests run with: short timeouts, a test User-Agent; each test changes what it
is about (``fetch_config(per_host=1)``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from feedwatch.fetch import FetchConfig

BASE = FetchConfig(
    user_agent="feedwatch-tests/0",
    connect_timeout=2.0,
    read_timeout=2.0,
    deadline=4.0,
    max_bytes=1024 * 1024,
    max_redirects=3,
    concurrency=5,
    per_host=5,
)


def fetch_config(**changes: Any) -> FetchConfig:
    return replace(BASE, **changes)
