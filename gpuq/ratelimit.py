"""Fair-use limits: who is limited by what (the HTTP side, who the client is and the headers
that say so, is gpuq.api.limits).

Who is limited by what (the README's limits section says the same):

* The daily request limit (`Settings.daily_limit`, default 200 per day), over
  every limited route together, taken before the view runs: per client address
  for anonymous requests, per participant for requests with a valid API key (so
  a venue behind one NAT is not one client). Routes marked exempt
  (gpuq.api.limits: health, leaderboard) are outside every limit; so are
  requests that match no route, and admins.
* Anonymous submissions: `Settings.submit_limit` (default 10 per hour) per
  client address.
* Submissions with an API key: `Settings.participant_limit` (default 10 per
  hour) per participant over every address together and, when set,
  `Settings.keyed_address_limit` per address over every participant together
  (a ceiling against farming keys). They do not use the address's anonymous
  quota.

The submission limits are taken only after a submission has passed validation
(invalid ones use none) and all at once: a refusal by one uses none of the
others. They are sliding logs (gpuq.sliding_log) whose truth is the database:
a log that Redis lost (a restart, a flush) or that a worker's memory does not
have is seeded from the stored submissions' times before it is checked. So
an exhausted address stays exhausted after a Redis restart. The daily limit
is a `limits` sliding-window counter; it restarts with Redis (it counts
requests, which nothing else keeps).

Counting on Redis is exact across any number of workers and hosts: each check
is one atomic script, and the connection pool is bounded and waits
(gpuq.store.redis) rather than failing a burst over into the fallback.

Failure policy when Redis is unreachable (chosen, tested, logged): the limits
count in the worker's memory instead (the submission logs seeded from the
database as above), and Redis is tried again after the shared Breaker's
interval. Limits then hold per worker process until Redis answers. No
request fails because the limiter's store did. When Redis answers again after
this worker counted submissions in memory, the two sides have each missed the
other's takes (a paused Redis keeps its logs), so the worker deletes every
submission log in Redis and in its memory: each is seeded again from the
database, which saw every accepted submission. (A submission taken but not yet
committed at that instant is the one it can miss.) The daily counters are not
reconciled: each side keeps its own count until the window passes.

Client address (gpuq.api.limits): the socket peer. With `GPUQ_TRUSTED_PROXIES=N` werkzeug's
ProxyFix takes the address N hops back in X-Forwarded-For; otherwise that
header is ignored, so it cannot buy a fresh quota.

Why not Flask-Limiter: it was the first implementation, and measured here it
cost about a quarter of the CPU time of GET /leaderboard although that route
is exempt, and it cannot take a quota after validation.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import RateLimiter, SlidingWindowCounterRateLimiter
from sqlalchemy import Connection

from gpuq import sliding_log
from gpuq.clock import Clock, utcnow
from gpuq.config import Settings
from gpuq.errors import RateLimited
from gpuq.sliding_log import Limit, Outcome
from gpuq.store.redis import Breaker, is_outage

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_PRIMARY_SECONDS = 5.0
"""After a Redis failure, count in memory for this long before trying Redis again (when
no shared Breaker is given; the service passes one set by GPUQ_REDIS_RETRY_SECONDS)."""

History = Callable[[str, str, dt.datetime, int, Connection | None], list[dt.datetime]]
"""`history(scope, who, since, limit, connection)`: the times of at most `limit` of the newest stored
submissions that count against a submission limit ("submit": anonymous ones from the
address `who`; "keyed": keyed ones from the address `who`; "participant": the participant
with id `who`), made after `since` (gpuq.submissions.store.accepted_times), read on
`connection` when given (the caller's transaction: a request must not need a second
pooled connection while it holds one), else on a connection of its own."""


@dataclasses.dataclass(frozen=True)
class Usage:
    """What the rate-limit headers report for one limit."""

    limit: int
    remaining: int
    reset_at: int
    """Epoch second when the next unit frees up."""
    retry_after: int
    """Whole seconds to wait when nothing remains (at least 1, at most the window)."""


@dataclasses.dataclass(frozen=True)
class _Scoped:
    scope: str
    who: str
    item: RateLimitItem


class RateLimits:
    """Every limit for one worker, on Redis when configured, else (and as fallback) in memory."""

    def __init__(
        self,
        settings: Settings,
        client: redis.Redis | None,
        breaker: Breaker | None = None,
        history: History | None = None,
        clock: Clock = utcnow,
    ):
        self.enabled = settings.ratelimit_enabled
        self._daily = parse_many(settings.daily_limit)
        self._submission_items = {
            "submit": parse_many(settings.submit_limit),
            "participant": parse_many(settings.participant_limit),
            "keyed": parse_many(settings.keyed_address_limit) if settings.keyed_address_limit else [],
        }
        self._prefix = f"{settings.redis_prefix}:rl"
        self._memory: RateLimiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._primary: RateLimiter = self._memory
        self._memory_logs: sliding_log.Store = sliding_log.MemoryStore()
        self._primary_logs: sliding_log.Store = self._memory_logs
        if client is not None:
            storage = RedisStorage(
                settings.redis_url, connection_pool=client.connection_pool, key_prefix=self._prefix
            )
            self._primary = SlidingWindowCounterRateLimiter(storage)
            self._primary_logs = sliding_log.RedisStore(client)
        self._counted_in_memory = False
        """Whether submission logs were checked in memory while Redis holds them too."""
        self._breaker = breaker or Breaker(RETRY_PRIMARY_SECONDS)
        self._history = history or (lambda _scope, _who, _since, _limit, _connection: [])
        self._clock = clock

    def take_daily(self, address: str, participant_id: int | None, report: bool) -> Usage | None:
        """Count one request against the daily limit of the address (anonymous) or of the
        participant; raises RateLimited when used up.

        Reads the window statistics (a second store round trip) only when `report`.
        """
        if not self.enabled:
            return None
        who = address if participant_id is None else f"participant:{participant_id}"
        reported: Usage | None = None
        for item in self._daily:
            allowed, usage = self._daily_hit(item, who, report)
            if not allowed:
                assert usage is not None
                whose = "address" if participant_id is None else "participant"
                raise RateLimited(f"daily request limit of this {whose} ({item})", usage, "daily")
            if usage is not None and (reported is None or usage.remaining < reported.remaining):
                reported = usage
        return reported

    def take_submitter(
        self, address: str, participant_id: int | None, connection: Connection | None = None
    ) -> Usage | None:
        """Use one unit of every submission limit that applies (see the module docstring);
        raises RateLimited naming the first used-up one (then none is used). Returns the
        tightest usage. A log to seed reads the database on `connection` when given."""
        if not self.enabled:
            return None
        limits = self._submission_limits(address, participant_id)
        outcome = self._check(limits, take=True, connection=connection)
        usages = [self._usage(limit.item, count) for limit, count in zip(limits, outcome.counts, strict=True)]
        if outcome.refused is not None:
            refused = limits[outcome.refused]
            raise RateLimited(
                f"{_DESCRIPTIONS[refused.scope]} ({refused.item})", usages[outcome.refused], refused.scope
            )
        return min(usages, key=lambda usage: usage.remaining, default=None)

    def usage(
        self, address: str, participant_id: int | None = None
    ) -> list[tuple[str, RateLimitItem, Usage]]:
        """Every limit that applies to `address` (and the participant) and its usage; uses up nothing."""
        who = address if participant_id is None else f"participant:{participant_id}"
        result = [
            (
                "daily",
                item,
                self._daily_usage(item, who),
            )
            for item in self._daily
        ]
        limits = self._submission_limits(address, participant_id)
        outcome = self._check(limits, take=False)
        for limit, count in zip(limits, outcome.counts, strict=True):
            result.append((limit.scope, limit.item, self._usage(limit.item, count)))
        return result

    def _daily_hit(self, item: RateLimitItem, who: str, report: bool) -> tuple[bool, Usage | None]:
        return self._on_store(lambda strategy: _hit_with(strategy, item, ("daily", who), report))

    def _daily_usage(self, item: RateLimitItem, who: str) -> Usage:
        return self._on_store(lambda strategy: _usage(strategy, item, ("daily", who)))

    def _submission_limits(self, address: str, participant_id: int | None) -> list[_Scoped]:
        if participant_id is None:
            return [_Scoped("submit", address, item) for item in self._submission_items["submit"]]
        return [
            _Scoped("participant", str(participant_id), item)
            for item in self._submission_items["participant"]
        ] + [_Scoped("keyed", address, item) for item in self._submission_items["keyed"]]

    def _check(self, limits: list[_Scoped], take: bool, connection: Connection | None = None) -> Outcome:
        now = self._clock()
        now_ms = _ms(now)
        logs = [
            Limit(
                f"{self._prefix}:log:{limit.scope}:{limit.who}:{limit.item.amount}/{limit.item.get_expiry()}",
                limit.item.amount,
                sliding_log.window_ms(limit.item.get_expiry()),
            )
            for limit in limits
        ]

        def seed(index: int) -> list[int]:
            limit = limits[index]
            since = now - dt.timedelta(seconds=limit.item.get_expiry())
            return [
                _ms(at) for at in self._history(limit.scope, limit.who, since, limit.item.amount, connection)
            ]

        return self._on_logs(lambda store: sliding_log.check(store, logs, now_ms, take, seed))

    def _usage(self, item: RateLimitItem, count: sliding_log.Count) -> Usage:
        now = _ms(self._clock()) / 1000
        window = item.get_expiry()
        frees_at = window + (now if count.oldest_ms is None else count.oldest_ms / 1000)
        retry_after = min(window, max(1, math.ceil(frees_at - now)))
        return Usage(item.amount, max(0, item.amount - count.used), math.ceil(now) + retry_after, retry_after)

    def _on_store(self, operation: Callable[[RateLimiter], T]) -> T:
        """Run `operation` on Redis, or on the memory counters while Redis fails (the failure policy)."""
        if self._primary is not self._memory and self._breaker.available():
            try:
                return operation(self._primary)
            except Exception as exc:  # any store failure; the policy is to keep limiting in memory
                if is_outage(exc):  # not, say, one bad key: that must not switch off Redis for all
                    self._breaker.trip("rate_limits", exc, "counting in memory meanwhile")
        return operation(self._memory)

    def _on_logs(self, operation: Callable[[sliding_log.Store], T]) -> T:
        """The same failure policy for the submission logs, reconciled when Redis is back (see
        the module docstring). A database error while seeding is not Redis's and passes through."""
        primary = self._primary_logs
        if isinstance(primary, sliding_log.RedisStore) and self._breaker.available():
            try:
                if self._counted_in_memory:
                    # Claimed first, so that one request of this worker reconciles, not each
                    # one arriving meanwhile; given back if Redis fails again.
                    self._counted_in_memory = False
                    try:
                        primary.forget(f"{self._prefix}:log:")
                    except BaseException:
                        self._counted_in_memory = True
                        raise
                    self._memory_logs = sliding_log.MemoryStore()
                return operation(primary)
            except (redis.RedisError, OSError) as exc:
                if is_outage(exc):
                    self._breaker.trip("submission_limits", exc, "counting in memory meanwhile")
        if primary is not self._memory_logs:
            self._counted_in_memory = True
        return operation(self._memory_logs)


_DESCRIPTIONS = {
    "submit": "submission limit of this address",
    "participant": "submission limit of this participant",
    "keyed": "limit of submissions with an API key from this address",
}


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def _hit_with(
    strategy: RateLimiter, item: RateLimitItem, ids: tuple[str, str], report: bool
) -> tuple[bool, Usage | None]:
    """Take one unit; the usage is read (a second round trip) only when reported or refused."""
    allowed = strategy.hit(item, *ids)
    if allowed and not report:
        return True, None
    return allowed, _usage(strategy, item, ids)


def _usage(strategy: RateLimiter, item: RateLimitItem, ids: tuple[str, str]) -> Usage:
    """The limit's current usage, as the headers report it."""
    reset, remaining = strategy.get_window_stats(item, *ids)
    now = time.time()
    if remaining < item.amount and reset - now < 0.001:
        # `limits` takes the reset as the window TTL modulo the window; a window
        # hit this very millisecond has a TTL of exactly twice the window, which
        # reads as "now". Its first unit frees one whole window from now.
        reset = now + item.get_expiry()
    retry_after = min(item.get_expiry(), max(1, math.ceil(reset - now)))
    return Usage(item.amount, remaining, math.ceil(now) + retry_after, retry_after)
