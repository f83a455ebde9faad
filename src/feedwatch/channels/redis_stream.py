"""A Redis Stream for downstream consumers: ``XADD <stream> MAXLEN ~ <maxlen> * …``.

Fields of each entry: ``idempotency_key``, ``kind`` (alert | digest | burst) and ``data`` (the
JSON payload, as the JSONL channel writes it). Consumers read with ``XREAD``/``XREADGROUP`` and
drop repeats by key. The stream is trimmed approximately (``~``), which costs Redis nothing.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from feedwatch.channels.base import DEFAULT_ROUTE, AlertPayload, ChannelError, DigestPayload, Route


class RedisStreamChannel:
    def __init__(self, name: str, url: str, stream: str, maxlen: int, route: Route = DEFAULT_ROUTE) -> None:
        self.name = name
        self.route = route
        self.stream = stream
        self._url = url
        self._maxlen = maxlen
        self._client: redis.Redis | None = None

    def _redis(self) -> redis.Redis:
        # Built on first use, in the worker child: a pooled connection must not cross a fork.
        if self._client is None:
            self._client = redis.Redis.from_url(self._url, socket_timeout=5, socket_connect_timeout=5)
        return self._client

    def send(self, payload: AlertPayload) -> None:
        self._add(payload.idempotency_key, "alert", payload.to_json())

    def send_digest(self, digest: DigestPayload) -> None:
        self._add(digest.idempotency_key, digest.kind, digest.to_json())

    def _add(self, key: str, kind: str, data: dict[str, Any]) -> None:
        fields = {"idempotency_key": key, "kind": kind, "data": json.dumps(data, ensure_ascii=False)}
        try:
            self._redis().xadd(self.stream, fields, maxlen=self._maxlen, approximate=True)  # type: ignore[arg-type]
        except redis.RedisError as exc:
            raise ChannelError(f"redis stream {self.stream!r}: {type(exc).__name__}: {exc}") from None
