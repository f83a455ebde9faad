"""The generic webhook: POST the alert as JSON, signed, to a destination the SSRF guard allows.

Request a receiver gets::

    POST <url>
    Content-Type: application/json
    Idempotency-Key: feedwatch-alert-42          (drop a repeat with the same key)
    X-Feedwatch-Event: alert | digest | burst
    X-Feedwatch-Timestamp: 1714564800            (Unix seconds)
    X-Feedwatch-Signature: sha256=<hex>          (only when secret_env is set)

    signature = HMAC-SHA256(secret, timestamp + "." + raw body), lowercase hex

A receiver recomputes the HMAC over the raw bytes it received, compares with
``hmac.compare_digest`` and refuses timestamps older than a few minutes (replay).

The destination is checked like a feed URL (``feedwatch.fetch``): http(s) only, and every
connection goes through ``GuardedResolver``, so a name that resolves (or re-resolves) to a
private address is refused unless ``FEEDWATCH_ALLOW_PRIVATE_NETWORKS`` is set. Redirects are
not followed (a 3xx is a failure): a redirect could lead the signed body anywhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from feedwatch import __version__
from feedwatch.channels.base import DEFAULT_ROUTE, AlertPayload, ChannelError, DigestPayload, Route
from feedwatch.fetch import AddressPolicy, FetchError
from feedwatch.fetch.guard import filter_addresses, validate_url

MAX_RESPONSE_BYTES = 64 * 1024


# Here, not in feedwatch.fetch.guard beside the check it applies: a feeds worker imports the
# guard, and aiohttp with it was ~5.5 MB of every worker process (round 55).
class GuardedResolver(AbstractResolver):
    """aiohttp resolver that only ever hands checked addresses to the connector."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        # FetchError is not an OSError, so aiohttp lets it through unwrapped.
        return filter_addresses(host, await self._inner.resolve(host, port, family), self._policy)

    async def close(self) -> None:
        await self._inner.close()


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Feedwatch-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does (used by our tests; copy it into a receiver)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def redact(url: str) -> str:
    """``url`` without credentials, path or query: safe for logs and error messages."""
    try:
        parsed = validate_url(url, AddressPolicy(allow_private=True))
    except FetchError:
        return "<invalid url>"
    return f"{parsed.scheme}://{parsed.host}{'' if parsed.port in (80, 443) else f':{parsed.port}'}/…"


class WebhookChannel:
    def __init__(
        self,
        name: str,
        url: str,
        secret: bytes | None,
        policy: AddressPolicy,
        route: Route = DEFAULT_ROUTE,
        timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.route = route
        self._url = url
        self._secret = secret
        self._policy = policy
        self._timeout = timeout

    def send(self, payload: AlertPayload) -> None:
        self._post(payload.to_json(), payload.idempotency_key, "alert")

    def send_digest(self, digest: DigestPayload) -> None:
        self._post(digest.to_json(), digest.idempotency_key, digest.kind)

    def _post(self, data: dict[str, Any], key: str, event: str) -> None:
        body = json.dumps(data, ensure_ascii=False, sort_keys=True).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"feedwatch/{__version__}",
            "Idempotency-Key": key,
            "X-Feedwatch-Event": event,
            "X-Feedwatch-Timestamp": timestamp,
        }
        if self._secret is not None:
            headers["X-Feedwatch-Signature"] = sign(self._secret, timestamp, body)
        try:
            validate_url(self._url, self._policy)
            status = asyncio.run(self._request(body, headers))
        except FetchError as exc:
            raise ChannelError(f"webhook {redact(self._url)}: {exc.error_class}: {exc.message}") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            detail = str(exc).replace(self._url, redact(self._url))  # the URL may carry a token
            raise ChannelError(f"webhook {redact(self._url)}: {type(exc).__name__}: {detail}") from None
        if not 200 <= status < 300:
            raise ChannelError(f"webhook {redact(self._url)}: HTTP {status}")

    async def _request(self, body: bytes, headers: dict[str, str]) -> int:
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self._policy), force_close=True, family=socket.AF_UNSPEC
        )
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session,
            session.post(self._url, data=body, headers=headers, allow_redirects=False) as response,
        ):
            await response.content.read(MAX_RESPONSE_BYTES)  # drain a little; the body is unused
            return response.status
