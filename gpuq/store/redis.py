"""The worker's Redis connection pool (or None in the embedded mode).

No retries and short socket timeouts: redis-py's default retries with
back-off would turn a dead Redis into multi-second requests, and every
Redis-backed part already has a fallback (see each part's failure policy).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis
from flask import Flask, current_app
from redis.backoff import NoBackoff
from redis.retry import Retry

from gpuq import metrics
from gpuq.config import Settings

EXTENSION = "gpuq.redis"
log = logging.getLogger(__name__)


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says Redis is unreachable or not answering (not, say, a WRONGTYPE)."""
    return isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OSError))


class Breaker:
    """One worker's memory of a Redis outage, shared by every Redis-backed part.

    After a failure (`trip`) the parts stop asking Redis for `seconds` and use their
    fallback at once (the database for the leaderboard, this process for events,
    limits and stream counts), so that a paused or unreachable Redis costs one
    timeout per worker and interval, not one per request and part. Then Redis is
    tried again.
    """

    def __init__(self, seconds: float, monotonic: Callable[[], float] = time.monotonic):
        self._seconds = seconds
        self._monotonic = monotonic
        self._open_until = 0.0

    def available(self) -> bool:
        """Whether to ask Redis now."""
        return self._monotonic() >= self._open_until

    def trip(self, part: str, exc: BaseException) -> None:
        """`part` saw Redis fail: nobody in this worker asks it for the next `seconds`.

        Counted in gpuq_redis_errors_total, and logged once per outage, under the part's
        name (the words before any comma, joined by "_": "rate limits, counting in memory"
        is rate_limits)."""
        name = part.split(",", 1)[0].strip().replace(" ", "_")
        metrics.redis_error(name)
        if self.available():
            log.warning(
                "Redis failed (%s: %r); not asking it for %.0f s",
                part,
                exc,
                self._seconds,
                extra={"event": "redis.fallback", "part": name},
            )
        self._open_until = self._monotonic() + self._seconds


POOL_SIZE = 64
"""Redis connections per worker."""
POOL_WAIT_SECONDS = 5.0
"""How long a request waits for a free pooled connection before that counts as a Redis
failure. A burst of several hundred requests waits its turn (each call takes well under a
millisecond) instead of failing over to the per-worker fallbacks, which would make the
limits inexact (an overflowing pool did: 40-50 of 600 simultaneous submissions accepted
instead of 10)."""


def make_client(settings: Settings) -> redis.Redis:
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        retry=Retry(NoBackoff(), 0),
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT_SECONDS,
    )
    return redis.Redis(connection_pool=pool)


def init_app(app: Flask, client: redis.Redis | None) -> None:
    app.extensions[EXTENSION] = client


def get_redis(app: Flask | None = None) -> redis.Redis | None:
    """The app's Redis client (the current app's by default); None in the embedded mode."""
    found: redis.Redis | None = (app or current_app).extensions[EXTENSION]
    return found
