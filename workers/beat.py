"""Exactly one ticking beat: a scheduler that sends ticks only while it holds a Redis lock.

On a Redis broker every beat (``celery -A workers.app beat`` or the one embedded in
``feedwatch run``) uses ``LeaderScheduler``. It sends due entries only while it holds the lock
``feedwatch:beat-leader`` (redis-py's ``Lock``: a token set with NX and a TTL, extended at most
once a second, where the beat loops every tick: 0.5 s by default). Another beat waits as a
standby, trying the lock every loop, and takes over at most one TTL after the leader died; a
leader that stops cleanly releases the lock at once.

Why not RedBeat: its lock is taken once, blocking, in ``beat_init``, its schedule lives in Redis,
and any Redis error in its tick ends the beat process. Celery's beat loop dies on every exception
from ``tick``, and our Redis keeps nothing on disk: after a restart both the lock and a
Redis-held schedule are gone. Here a Redis error never leaves ``tick``; a lost lock (expired
during an outage, or wiped by a restart) is simply taken again, or the beat becomes the standby.

Duplicate ticks stay harmless whatever happens to the lock (a partition, two beats during a
takeover): feeds are claimed in the database (``store.claim_due_feeds``), so a second tick finds
nothing due. The lock saves work; the database keeps correctness.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import redis
from celery.beat import PersistentScheduler
from redis.exceptions import LockError, RedisError

from feedwatch.settings import get_settings

LOCK_KEY = "feedwatch:beat-leader"
#: Floor of the lock TTL in seconds; the TTL is also at least three loops of the beat.
MIN_LOCK_TTL = 10.0
#: A leader extends its lock at most this often (seconds): one Redis call a second, not one a loop.
EXTEND_EVERY = 1.0

logger = logging.getLogger("feedwatch.beat")


def lock_ttl(tick_seconds: float) -> float:
    """How long a leader's lock outlives its last extension."""
    return max(MIN_LOCK_TTL, 3 * tick_seconds)


class LeaderScheduler(PersistentScheduler):  # type: ignore[misc]
    """Celery's file-backed scheduler, gated by a Redis leader lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        settings = get_settings()
        self._loop = min(settings.tick_seconds, lock_ttl(settings.tick_seconds) / 3)
        self._ttl = lock_ttl(settings.tick_seconds)
        self._redis = redis.Redis.from_url(
            settings.broker_url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=0
        )
        self._lock = self._redis.lock(LOCK_KEY, timeout=self._ttl, blocking=False, thread_local=False)
        self.leader = False
        self._extended_at = 0.0  # time.monotonic() of the last extension
        super().__init__(*args, **kwargs)

    def _hold_lock(self) -> bool:
        """Extend the lock we hold, or try to take a free one. True while we lead."""
        try:
            if self.leader:
                if time.monotonic() - self._extended_at < EXTEND_EVERY:
                    return True
                try:
                    self._lock.reacquire()
                    self._extended_at = time.monotonic()
                    return True
                except LockError:  # expired in an outage, or wiped by a Redis restart
                    logger.warning("beat.lock_lost", extra={"lock": LOCK_KEY})
                    self.leader = False
            if self._lock.acquire(blocking=False):
                self._extended_at = time.monotonic()
                logger.warning("beat.leader", extra={"lock": LOCK_KEY, "ttl": self._ttl})
                self.leader = True
        except RedisError as exc:
            # Redis is down: a leader keeps ticking (its publishes fail and the outbox waits);
            # a standby stays idle. Either way beat itself survives the outage.
            logger.warning("beat.lock_unavailable", extra={"error": str(exc)})
        return self.leader

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if not self._hold_lock():
            return self._loop
        interval: float = super().tick(*args, **kwargs)
        return min(interval, self._loop)

    def close(self) -> None:
        if self.leader:
            # Expired or unreachable: the standby then takes over after the TTL instead.
            with contextlib.suppress(LockError, RedisError):
                self._lock.release()
            self.leader = False
        super().close()
