"""Caps on open live streams: per client address (in Redis across workers when configured,
else in this process) and per worker process.

Counting is exact and heals by itself:

* Each open stream holds a *lease* in its address's sorted set in Redis (member: a
  unique stream id, score: when the lease runs out). The stream renews it while it
  is open (`Ticket.renew`, at least every heartbeat) and removes it when it ends. A
  count drops the expired leases first, so the streams of a killed worker stop
  counting one lease (`LEASE_HEARTBEATS` heartbeats) later, not an hour later.
* A renewal re-adds a lease that is missing, so after Redis restarts empty the open
  streams are counted again within one heartbeat.
* Acquiring is one Lua script (drop expired, count, add if under the cap), so
  simultaneous connects from one address never overshoot.
* While Redis fails (the shared Breaker), an address's streams are counted in this
  process, as the rate limits are; once Redis answers again, the next renewal of such
  a stream moves it to a lease in Redis, so every open stream counts there again.
* The per-worker cap is a counter in this process; the server gives each worker
  more connections than streams (gpuq.server), so its 503 can always be sent and
  the JSON API stays reachable.

A stream's ticket is released exactly once, whatever ends it (the client leaving,
the stream's lifetime, a shutdown, a HEAD request that never starts the body).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

import redis

from gpuq import metrics
from gpuq.config import Settings
from gpuq.errors import RateLimited, Unavailable
from gpuq.ratelimit import Usage
from gpuq.store.redis import Breaker, is_outage

log = logging.getLogger(__name__)

LEASE_HEARTBEATS = 3
"""A lease lasts this many heartbeats (at least MIN_LEASE_SECONDS): a stream renews it at
least once a heartbeat, so only a stream whose worker died lets it run out."""
MIN_LEASE_SECONDS = 1.0

ACQUIRE = """
-- KEYS[1]: the address's leases; ARGV: now, lease end, cap, stream id (times in ms)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
"""

RENEW = """
-- KEYS[1]: the address's leases; ARGV: lease end, stream id. Re-adds a lost lease.
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
if redis.call('PEXPIRETIME', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('PEXPIREAT', KEYS[1], ARGV[1])
end
return 1
"""


class Ticket:
    """One open stream's place under the caps; `renew` while open, `release` once at the end."""

    def __init__(self, caps: StreamCaps, address: str, in_redis: bool):
        self._caps = caps
        self.address = address
        self.in_redis = in_redis
        self.id = uuid.uuid4().hex
        self._released = False
        self._renew_due = 0.0

    def renew(self) -> None:
        """Extend the lease if half of it has passed, or move a stream counted in memory to
        a lease once Redis answers again (cheap to call on every event)."""
        now = self._caps.monotonic()
        if not self._released and now >= self._renew_due:
            self._renew_due = now + self._caps.lease_seconds / 2
            self._caps._renew(self)

    def renewed_now(self) -> None:
        self._renew_due = self._caps.monotonic() + self._caps.lease_seconds / 2

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._caps._release(self)


class StreamCaps:
    """Counts open streams per address (Redis leases or this process) and per worker."""

    def __init__(
        self,
        settings: Settings,
        client: redis.Redis | None,
        breaker: Breaker | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self._breaker = breaker or Breaker(0.0)
        self.monotonic = monotonic
        """When renewals are due (a test's clock may stand in)."""
        self._per_address = settings.streams_per_address
        self._per_worker = settings.streams_per_worker
        self.lease_seconds = max(MIN_LEASE_SECONDS, LEASE_HEARTBEATS * settings.stream_heartbeat_seconds)
        self._client = client
        self._acquire = client.register_script(ACQUIRE) if client is not None else None
        self._renew_script = client.register_script(RENEW) if client is not None else None
        self._prefix = f"{settings.redis_prefix}:streams"
        self._lock = threading.Lock()
        self._local: dict[str, int] = {}
        self._open = 0

    @property
    def open(self) -> int:
        """Streams open in this worker."""
        return self._open

    def acquire(self, address: str) -> Ticket:
        """Count one stream for `address`; raises Unavailable (503) or RateLimited (429)."""
        with self._lock:
            if self._open >= self._per_worker:
                raise Unavailable(
                    "this worker holds as many live streams as it may; retry later", retry_after=5
                )
            self._open += 1
        ticket = Ticket(self, address, in_redis=False)
        try:
            taken = self._take_address(ticket)
        except BaseException:
            self._leave_worker()
            raise
        if not taken:
            self._leave_worker()
            usage = Usage(self._per_address, 0, int(time.time()) + 5, 5)
            raise RateLimited(f"limit of {self._per_address} open live streams per address", usage, "streams")
        metrics.stream_opened()
        ticket.renewed_now()  # acquiring gave it a whole lease
        return ticket

    def _leave_worker(self) -> None:
        with self._lock:
            self._open -= 1

    def _key(self, address: str) -> str:
        return f"{self._prefix}:{address}"

    def _lease_end_ms(self) -> int:
        return int((time.time() + self.lease_seconds) * 1000)

    def _take_address(self, ticket: Ticket) -> bool:
        if self._acquire is not None and self._breaker.available():
            try:
                now_ms = int(time.time() * 1000)
                allowed = self._acquire(
                    keys=[self._key(ticket.address)],
                    args=[now_ms, self._lease_end_ms(), self._per_address, ticket.id],
                )
                ticket.in_redis = True
                return bool(allowed)
            except redis.RedisError as exc:  # same policy as the rate limits: count in memory
                self._redis_failed(exc)
        with self._lock:
            count = self._local.get(ticket.address, 0) + 1
            if count > self._per_address:
                return False
            self._local[ticket.address] = count
            return True

    def _renew(self, ticket: Ticket) -> None:
        if self._renew_script is None or not self._breaker.available():
            return  # the lease runs out meanwhile; the next renewal after Redis is back re-adds it
        try:
            self._renew_script(keys=[self._key(ticket.address)], args=[self._lease_end_ms(), ticket.id])
        except redis.RedisError as exc:
            self._redis_failed(exc)
            return
        if not ticket.in_redis:  # counted in memory during an outage: its lease now counts it
            ticket.in_redis = True
            self._forget_local(ticket.address)

    def _release(self, ticket: Ticket) -> None:
        self._leave_worker()
        metrics.stream_closed()
        if not ticket.in_redis:
            self._forget_local(ticket.address)
            return
        if self._client is None or not self._breaker.available():
            return  # the lease runs out by itself
        try:
            self._client.zrem(self._key(ticket.address), ticket.id)
        except redis.RedisError as exc:  # the lease runs out by itself
            self._redis_failed(exc)

    def _forget_local(self, address: str) -> None:
        """One stream of `address` no longer counts in this process."""
        with self._lock:
            left = self._local.get(address, 0) - 1
            if left > 0:
                self._local[address] = left
            else:
                self._local.pop(address, None)

    def _redis_failed(self, exc: redis.RedisError) -> None:
        if is_outage(exc):  # logged by the breaker, once per outage
            self._breaker.trip("stream_caps", exc, "counting in memory meanwhile")
        else:
            log.warning("stream caps: Redis refused a call, counting in memory: %r", exc)
