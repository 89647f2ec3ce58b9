"""Caps on open live streams: per client address (in Redis across workers when configured,
else in this process) and per worker process."""

from __future__ import annotations

import logging
import threading
import time

import redis

from gpuq import metrics
from gpuq.config import Settings
from gpuq.errors import RateLimited, Unavailable
from gpuq.ratelimit import Usage
from gpuq.store.redis import Breaker, is_outage

log = logging.getLogger(__name__)


class StreamCaps:
    """Counts open streams per address (Redis or this process) and per worker."""

    def __init__(self, settings: Settings, client: redis.Redis | None, breaker: Breaker | None = None):
        self._breaker = breaker or Breaker(0.0)
        self._per_address = settings.streams_per_address
        self._per_worker = settings.streams_per_worker
        self._ttl = int(settings.stream_max_seconds) + 120  # a dead worker's counts fade out
        self._client = client
        self._prefix = f"{settings.redis_prefix}:streams"
        self._lock = threading.Lock()
        self._local: dict[str, int] = {}
        self._open = 0

    def acquire(self, address: str) -> bool:
        """Count one stream for `address`; raises Unavailable (503) or RateLimited (429).

        Returns where it was counted (True: in Redis), to hand back to `release`.
        """
        with self._lock:
            if self._open >= self._per_worker:
                raise Unavailable(
                    "this worker holds as many live streams as it may; retry later", retry_after=5
                )
            self._open += 1
        taken, in_redis = self._take_address(address)
        if not taken:
            with self._lock:
                self._open -= 1
            usage = Usage(self._per_address, 0, int(time.time()) + 5, 5)
            raise RateLimited(f"limit of {self._per_address} open live streams per address", usage, "streams")
        metrics.stream_opened()
        return in_redis

    def release(self, address: str, in_redis: bool) -> None:
        with self._lock:
            self._open -= 1
        metrics.stream_closed()
        if in_redis and self._client is not None:
            if not self._breaker.available():  # Redis just failed: the key's expiry corrects it
                return
            try:
                self._client.decr(f"{self._prefix}:{address}")
            except redis.RedisError as exc:  # the key's expiry corrects the count
                log.warning("could not count a closed stream in Redis: %r", exc)
                if is_outage(exc):
                    self._breaker.trip("stream caps", exc)
            return
        with self._lock:
            self._local[address] = max(0, self._local.get(address, 0) - 1)

    def _take_address(self, address: str) -> tuple[bool, bool]:
        """(allowed, counted in Redis)."""
        if self._client is not None and self._breaker.available():
            key = f"{self._prefix}:{address}"
            try:
                pipe = self._client.pipeline(transaction=True)
                pipe.incr(key)
                pipe.expire(key, self._ttl)
                count, _ = pipe.execute()
                if count <= self._per_address:
                    return True, True
                self._client.decr(key)
                return False, True
            except redis.RedisError as exc:  # same policy as the rate limits: count in memory
                log.warning("stream caps counting in memory: %r", exc)
                if is_outage(exc):
                    self._breaker.trip("stream caps", exc)
        with self._lock:
            count = self._local.get(address, 0) + 1
            if count > self._per_address:
                return False, False
            self._local[address] = count
            return True, False
