"""The JSONL channel: one JSON object a line, appended under an exclusive lock and fsynced."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from feedwatch.channels.base import AlertPayload, ChannelError
from feedwatch.timeutil import isoformat_utc, utcnow


class JsonlChannel:
    name = "jsonl"

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, payload: AlertPayload) -> None:
        record = payload.to_json() | {"delivered_at": isoformat_utc(utcnow())}
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
