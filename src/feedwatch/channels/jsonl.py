"""The JSONL channel: one JSON object a line, appended under an exclusive lock and fsynced; a
batch of alerts (``send_many``) is one append and one fsync."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from feedwatch.channels.base import DEFAULT_ROUTE, AlertPayload, ChannelError, DigestPayload, Route
from feedwatch.timeutil import isoformat_utc, utcnow


class JsonlChannel:
    name = "jsonl"

    def __init__(self, path: Path, name: str = "jsonl", route: Route = DEFAULT_ROUTE) -> None:
        self.path = path
        self.name = name
        self.route = route

    def send(self, payload: AlertPayload) -> None:
        self._append([payload.to_json()])

    def send_many(self, payloads: Sequence[AlertPayload]) -> None:
        """The alerts as consecutive lines: one append, one fsync. An append per alert (open,
        lock, write, fsync, close) put a delivered alert at 0.45-0.49 ms of CPU in batches of 25,
        one per batch at 0.28-0.32 (docs/performance-history.md, round 11); and an fsync takes
        milliseconds on a disk that is not a cache."""
        self._append([p.to_json() for p in payloads])

    def send_digest(self, digest: DigestPayload) -> None:
        self._append([digest.to_json()])

    def _append(self, records: list[dict[str, Any]]) -> None:
        stamp = {"delivered_at": isoformat_utc(utcnow())}
        lines = "".join(json.dumps(r | stamp, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
        left = memoryview(lines.encode())
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                while left:  # a regular file takes it all at once, short of an error
                    left = left[os.write(fd, left) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise ChannelError(f"cannot append to {self.path}: {exc}") from exc
