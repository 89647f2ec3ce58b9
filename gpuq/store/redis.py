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

    def trip(self, part: str, exc: BaseException, meanwhile: str = "") -> None:
        """`part` saw Redis fail: nobody in this worker asks it for the next `seconds`.

        Counted in gpuq_redis_errors_total under `part` (a metric label such as
        "rate_limits"), and logged once per outage with what the part does `meanwhile`."""
        metrics.redis_error(part)
        if self.available():
            log.warning(
                "Redis failed (%s: %r); not asking it for %.0f s%s",
                part,
                exc,
                self._seconds,
                f"; {meanwhile}" if meanwhile else "",
                extra={"event": "redis.fallback", "part": part},
            )
        self._open_until = self._monotonic() + self._seconds


def make_client(settings: Settings) -> redis.Redis:
    """A client on a bounded pool (GPUQ_REDIS_POOL_SIZE connections per worker) that waits
    up to GPUQ_REDIS_POOL_WAIT_SECONDS for a free connection before that counts as a Redis
    failure: a burst of several hundred requests waits its turn (each call takes well under
    a millisecond) instead of failing over to the per-worker fallbacks, which would make
    the limits inexact (an overflowing pool did: 40-50 of 600 simultaneous submissions
    accepted instead of 10)."""
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        retry=Retry(NoBackoff(), 0),
        max_connections=settings.redis_pool_size,
        timeout=settings.redis_pool_wait_seconds,
    )
    return redis.Redis(connection_pool=pool)


def init_app(app: Flask, client: redis.Redis | None) -> None:
    app.extensions[EXTENSION] = client


def get_redis(app: Flask | None = None) -> redis.Redis | None:
    """The app's Redis client (the current app's by default); None in the embedded mode."""
    found: redis.Redis | None = (app or current_app).extensions[EXTENSION]
    return found
