"""The worker's Redis connection pool (or None in the embedded mode).

No retries and short socket timeouts: redis-py's default retries with
back-off would turn a dead Redis into multi-second requests, and every
Redis-backed part already has a fallback (see each part's failure policy).
"""

from __future__ import annotations

import redis
from flask import Flask, current_app
from redis.backoff import NoBackoff
from redis.retry import Retry

from gpuq.config import Settings

EXTENSION = "gpuq.redis"


def make_client(settings: Settings) -> redis.Redis:
    pool = redis.ConnectionPool.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        retry=Retry(NoBackoff(), 0),
        max_connections=64,
    )
    return redis.Redis(connection_pool=pool)


def init_app(app: Flask, client: redis.Redis | None) -> None:
    app.extensions[EXTENSION] = client


def get_redis(app: Flask | None = None) -> redis.Redis | None:
    """The app's Redis client (the current app's by default); None in the embedded mode."""
    found: redis.Redis | None = (app or current_app).extensions[EXTENSION]
    return found
