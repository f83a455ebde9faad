"""The JSONL channel: one JSON object a line, appended under an exclusive lock and fsynced."""

from __future__ import annotations

import fcntl
import json
import os
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
        self._append(payload.to_json())

    def send_digest(self, digest: DigestPayload) -> None:
        self._append(digest.to_json())

    def _append(self, data: dict[str, Any]) -> None:
        record = data | {"delivered_at": isoformat_utc(utcnow())}
        line = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise ChannelError(f"cannot append to {self.path}: {exc}") from exc
