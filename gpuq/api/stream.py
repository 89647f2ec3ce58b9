"""GET /leaderboard/stream: the live board as Server-Sent Events (exempt from rate limits).

On connect: a `snapshot` event (leaders, score histogram, records, slots);
then `submission` and `leaderboard` events as they happen on any worker; a
comment line every heartbeat; the stream ends after Settings.stream_max_seconds
(EventSource reconnects by itself, and a reconnect, with or without
Last-Event-ID, starts with a fresh snapshot).

Caps: Settings.streams_per_address open streams per client address (429,
counted in Redis across workers when configured) and
Settings.streams_per_worker per worker process (503).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import redis
from flask import Blueprint, Flask, Response, current_app

from gpuq import live, ratelimit
from gpuq.api import slots as slots_api
from gpuq.config import Settings
from gpuq.errors import RateLimited, Unavailable
from gpuq.events import CLOSED, Event, LocalBus, make_bus
from gpuq.events import EXTENSION as EVENTS
from gpuq.leaderboard import get_leaderboard
from gpuq.ratelimit import Usage
from gpuq.store.db import get_db
from gpuq.store.redis import get_redis

bp = Blueprint("stream", __name__)
log = logging.getLogger(__name__)

CAPS = "gpuq.stream_caps"
SUMMARIES = "gpuq.board_summaries"


class StreamCaps:
    """Counts open streams per address (Redis or this process) and per worker."""

    def __init__(self, settings: Settings, client: redis.Redis | None):
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
            raise RateLimited(f"limit of {self._per_address} open live streams per address", usage)
        return in_redis

    def release(self, address: str, in_redis: bool) -> None:
        with self._lock:
            self._open -= 1
        if in_redis and self._client is not None:
            try:
                self._client.decr(f"{self._prefix}:{address}")
            except redis.RedisError as exc:  # the key's expiry corrects the count
                log.warning("could not count a closed stream in Redis: %r", exc)
            return
        with self._lock:
            self._local[address] = max(0, self._local.get(address, 0) - 1)

    def _take_address(self, address: str) -> tuple[bool, bool]:
        """(allowed, counted in Redis)."""
        if self._client is not None:
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
        with self._lock:
            count = self._local.get(address, 0) + 1
            if count > self._per_address:
                return False, False
            self._local[address] = count
            return True, False


def sse(event: str, data: Any, event_id: str | None = None) -> str:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


@bp.get("/leaderboard/stream")
@ratelimit.exempt
def leaderboard_stream():
    settings: Settings = current_app.config["GPUQ_SETTINGS"]
    bus: LocalBus = current_app.extensions[EVENTS]
    caps: StreamCaps = current_app.extensions[CAPS]
    address = ratelimit.client_address()
    in_redis = caps.acquire(address)
    try:
        subscription = bus.subscribe()
        snapshot = live.snapshot(
            get_leaderboard(),
            get_db().autocommit,
            settings.board_size,
            current_app.extensions[SUMMARIES],
            slots_api.current_pool,
        )
    except BaseException:
        caps.release(address, in_redis)
        raise

    def generate() -> Iterator[str]:
        try:
            yield "retry: 2000\n\n"
            yield sse("snapshot", snapshot, f"snapshot-{int(time.time() * 1000)}")
            deadline = time.monotonic() + settings.stream_max_seconds
            while (left := deadline - time.monotonic()) > 0:
                try:
                    item = subscription.get(timeout=min(settings.stream_heartbeat_seconds, left))
                except queue.Empty:
                    yield ": heartbeat\n\n"
                    continue
                if item is CLOSED:
                    return
                assert isinstance(item, Event)
                yield sse(item.type, item.data, item.id)
        finally:
            bus.unsubscribe(subscription)
            caps.release(address, in_redis)

    response = Response(generate(), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # proxies must not hold events back
    return response


def init_app(app: Flask, settings: Settings) -> None:
    client = get_redis(app)
    channel = f"{settings.redis_prefix}:events"
    app.extensions[EVENTS] = make_bus(settings.redis_url, client, channel, settings.redis_timeout)
    app.extensions[CAPS] = StreamCaps(settings, client)
    app.extensions[SUMMARIES] = live.Summaries()
