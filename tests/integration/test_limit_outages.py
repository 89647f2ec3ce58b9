"""Submission limits across Redis outages that keep Redis's data (a pause, a network cut):
while a worker counts in memory, Redis's logs miss those takes, and the memory logs then
miss the takes made on Redis after it is back. Neither may let a client past its limit."""

from __future__ import annotations

import datetime as dt

import pytest
import redis

from gpuq.config import Settings
from gpuq.errors import RateLimited
from gpuq.ratelimit import RateLimits
from gpuq.store.redis import Breaker, make_client
from tests.services import CuttableProxy


class Ticking:
    """A monotonic clock that moves only when told to (the breaker's interval)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_two_outages_that_keep_redis_data_let_no_client_past_its_limit(redis_server):
    proxy = CuttableProxy("127.0.0.1", redis_server.port)
    client = make_client(Settings(redis_url=f"redis://127.0.0.1:{proxy.port}/0"))  # the service's client
    ticking = Ticking()
    stored: list[dt.datetime] = []  # the database: every accepted submission's time
    moment = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)

    def history(scope, who, since, limit, connection):
        return [at for at in stored if at > since][-limit:]

    def clock() -> dt.datetime:
        return moment + dt.timedelta(seconds=len(stored))

    limits = RateLimits(
        Settings(submit_limit="3 per hour"), client, Breaker(5.0, ticking), history=history, clock=clock
    )
    redis_keys = redis.Redis.from_url(redis_server.url)

    def submit() -> bool:
        try:
            limits.take_submitter("198.51.100.7", None)
        except RateLimited:
            return False
        stored.append(clock())
        return True

    try:
        accepted = [submit()]  # on Redis
        assert redis_keys.keys("gpuq:rl:log:*"), "the first take is logged in Redis"
        for _outage in range(2):
            proxy.cut()
            accepted.append(submit())  # Redis fails: counted in memory, seeded from the database
            proxy.restore()
            ticking.now += 10  # the breaker lets the worker ask Redis again
            accepted.append(submit())  # on Redis, which kept its log through the outage
        assert accepted == [True, True, True, False, False]
        assert len(stored) == 3
    finally:
        proxy.close()
        client.close()
        redis_keys.close()


@pytest.mark.parametrize("prefix", ["gpuq", "odd*[prefix]?"])
def test_reconciling_deletes_only_the_submission_logs(redis_server, prefix):
    from gpuq.sliding_log import RedisStore

    client = redis.Redis.from_url(redis_server.url)
    try:
        client.set(f"{prefix}:rl:log:submit:a:10/3600", 1)
        client.set(f"{prefix}:rl:log:submit:a:10/3600:seeded", 1)
        client.set(f"{prefix}:rl:daily:a", 1)
        client.set(f"{prefix}x:rl:log:submit:b", 1)  # another service's keys
        RedisStore(client).forget(f"{prefix}:rl:log:")
        assert sorted(key.decode() for key in client.keys("*")) == sorted(
            [f"{prefix}:rl:daily:a", f"{prefix}x:rl:log:submit:b"]
        )
    finally:
        client.close()


def test_streams_opened_during_an_outage_count_in_redis_once_it_answers(redis_server):
    from gpuq.live.caps import StreamCaps

    proxy = CuttableProxy("127.0.0.1", redis_server.port)
    client = make_client(Settings(redis_url=f"redis://127.0.0.1:{proxy.port}/0"))  # the service's client
    ticking = Ticking()
    caps = StreamCaps(Settings(streams_per_address=2), client, Breaker(5.0, ticking), monotonic=ticking)
    address = "198.51.100.8"
    try:
        proxy.cut()
        during = [caps.acquire(address), caps.acquire(address)]  # counted in this process
        with pytest.raises(RateLimited):
            caps.acquire(address)
        proxy.restore()
        ticking.now += 60  # Redis may be asked again, and the streams' renewals are due
        for ticket in during:
            ticket.renew()
        # Another worker, counting only in Redis, sees both streams.
        other_client = redis.Redis.from_url(redis_server.url)
        elsewhere = StreamCaps(Settings(streams_per_address=2), other_client)
        with pytest.raises(RateLimited):
            elsewhere.acquire(address)
        during[0].release()
        elsewhere.acquire(address).release()
        during[1].release()
        assert caps.open == 0
        other_client.close()
    finally:
        proxy.close()
        client.close()
