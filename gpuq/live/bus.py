"""Live events: published once, delivered to every open stream on every worker and host.

`EventBus.publish` sends an event; `EventBus.subscribe` gives a bounded queue
of events for one stream. Twins, chosen by configuration:

* `LocalBus` (embedded mode): fan-out inside this process.
* `RedisBus`: PUBLISH on one channel; each worker process runs one listener
  (started with its first subscriber) that fans messages out to its local
  subscribers, so any number of streams cost one Redis subscription per worker.

Failure policy: publishing never fails a request. If Redis refuses a PUBLISH
the event is delivered to this worker's streams only, and logged. A broken
subscription reconnects with back-off; streams miss what was sent meanwhile,
which a client recovers by reconnecting (it then gets a fresh snapshot). A
stream whose queue overflows (a client too slow to read) is ended for the
same reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import queue
import threading
import time
from typing import Any

import redis

from gpuq import metrics
from gpuq.config import Settings
from gpuq.store.redis import Breaker, is_outage

log = logging.getLogger(__name__)

QUEUE_SIZE = 256
CLOSED = object()
"""Put on a subscription's queue to end its stream."""


@dataclasses.dataclass(frozen=True)
class Event:
    type: str
    data: dict[str, Any]
    id: str


class Subscription:
    """One stream's events, in order; `get` returns CLOSED when the stream must end."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_SIZE)

    def offer(self, item: Any) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:  # too slow: end the stream, the client reconnects for a snapshot
            self.close()

    def close(self) -> None:
        with_room = self._queue
        while True:
            try:
                with_room.put_nowait(CLOSED)
                return
            except queue.Full:
                with_room.get_nowait()

    def get(self, timeout: float) -> Any:
        """The next event or CLOSED; raises queue.Empty after `timeout` seconds."""
        return self._queue.get(timeout=timeout)


class _Hub:
    """The subscribers of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: set[Subscription] = set()
        self._ids = itertools.count(1)

    def add(self) -> Subscription:
        subscription = Subscription()
        with self._lock:
            self._subscribers.add(subscription)
        return subscription

    def remove(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(subscription)

    def close_all(self) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscription in subscribers:
            subscription.close()

    def deliver(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscription in subscribers:
            subscription.offer(event)

    def new_id(self) -> str:
        # Unique enough across processes for a client to tell events apart; a
        # reconnecting client always gets a fresh snapshot, so ids never need replaying.
        return f"{int(time.time() * 1000)}-{next(self._ids)}"


class LocalBus:
    """In-process twin (embedded mode)."""

    def __init__(self) -> None:
        self.hub = _Hub()

    def publish(self, type_: str, data: dict[str, Any]) -> None:
        self.hub.deliver(Event(type_, data, self.hub.new_id()))

    def subscribe(self) -> Subscription:
        return self.hub.add()

    def unsubscribe(self, subscription: Subscription) -> None:
        self.hub.remove(subscription)

    def close_all(self) -> None:
        """End every open stream of this process (the worker is shutting down)."""
        self.hub.close_all()


class RedisBus(LocalBus):
    """Redis pub/sub fan-out: one subscription per worker process, shared by its streams."""

    RECONNECT_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)

    def __init__(
        self, client: redis.Redis, listener_client: redis.Redis, channel: str, breaker: Breaker | None = None
    ):
        super().__init__()
        self._breaker = breaker or Breaker(0.0)
        self._client = client
        self._listener_client = listener_client
        self.channel = channel
        self._listener: threading.Thread | None = None
        self._listener_lock = threading.Lock()
        self.listening = threading.Event()
        """Set while the subscription is confirmed by Redis."""

    def publish(self, type_: str, data: dict[str, Any]) -> None:
        event = Event(type_, data, self.hub.new_id())
        message = json.dumps({"type": event.type, "data": event.data, "id": event.id}, separators=(",", ":"))
        if not self._breaker.available():  # Redis just failed: this worker's streams only
            self.hub.deliver(event)
            return
        try:
            self._client.publish(self.channel, message)
        except redis.RedisError as exc:
            log.warning("could not publish a %s event, delivering to this worker only: %r", type_, exc)
            if is_outage(exc):
                self._breaker.trip("event_bus", exc)
            self.hub.deliver(event)

    def subscribe(self) -> Subscription:
        subscription = super().subscribe()
        self._ensure_listener()
        return subscription

    def _ensure_listener(self) -> None:
        with self._listener_lock:
            if self._listener is None or not self._listener.is_alive():
                self._listener = threading.Thread(target=self._listen, name="gpuq-events", daemon=True)
                self._listener.start()

    def _listen(self) -> None:
        failures = 0
        while True:
            pubsub = self._listener_client.pubsub(ignore_subscribe_messages=False)  # type: ignore[no-untyped-call]  # redis-py leaves pubsub() unannotated
            try:
                pubsub.subscribe(self.channel)
                while True:
                    message = pubsub.get_message(timeout=5.0)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self.listening.set()
                        failures = 0
                    elif message["type"] == "message":
                        self._deliver_raw(message["data"])
            except (redis.RedisError, OSError) as exc:
                self.listening.clear()
                delay = self.RECONNECT_SECONDS[min(failures, len(self.RECONNECT_SECONDS) - 1)]
                failures += 1
                metrics.redis_error("event_subscription")
                log.warning("event subscription lost, reconnecting in %.1f s: %r", delay, exc)
                time.sleep(delay)
            finally:
                with contextlib.suppress(Exception):  # closing a broken connection may fail too
                    pubsub.close()

    def _deliver_raw(self, raw: bytes) -> None:
        try:
            payload = json.loads(raw)
            event = Event(str(payload["type"]), dict(payload["data"]), str(payload["id"]))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring a malformed event on %s: %r", self.channel, exc)
            return
        self.hub.deliver(event)


EventBus = LocalBus
"""What publishes and subscribes: LocalBus or its Redis twin RedisBus (a subclass)."""


def make_bus(settings: Settings, client: redis.Redis | None, breaker: Breaker | None = None) -> EventBus:
    """The Redis bus when Redis is configured (channel `<prefix>:events`), else the local one."""
    if client is None:
        return LocalBus()
    # The listener waits for messages indefinitely, so its connection has no read timeout.
    listener_client = redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.redis_timeout,
        socket_keepalive=True,
        health_check_interval=30,
    )
    return RedisBus(client, listener_client, f"{settings.redis_prefix}:events", breaker)
