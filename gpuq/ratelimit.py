"""Fair-use limits: how much a client may do (the HTTP side, who the client is and the
headers that say so, is gpuq.api.limits).

Two limits, both per client address, both sliding-window counters from the
`limits` library (atomic Lua scripts on Redis, so exact across any number of
workers and hosts):

* the daily request limit (`Settings.daily_limit`, default 200 per day),
  counted over every limited route together, taken before the view runs.
  Routes marked exempt (gpuq.api.limits: health, leaderboard) are outside every limit;
  so are requests that match no route.
* the submission limit (`Settings.submit_limit`, default 10 per hour), taken
  by `RateLimits.take_submitter` only after a submission has passed
  validation, so invalid submissions do not use it up.

And one per participant: the participant submission limit
(`Settings.participant_limit`, default 10 per hour), counted by API key over
every address together, taken with (and checked before) the address's
submission limit.

Client address (gpuq.api.limits): the socket peer. With `GPUQ_TRUSTED_PROXIES=N` werkzeug's
ProxyFix takes the address N hops back in X-Forwarded-For; otherwise that
header is ignored, so it cannot buy a fresh quota.

Failure policy when Redis is unreachable (chosen, tested, logged): both limits
count in the worker's memory instead, and Redis is tried again after
`RETRY_PRIMARY_SECONDS`. Limits then hold per worker process (exact in the
embedded single-worker mode; at most workers x limit across a deployment)
until Redis answers. No request fails because the limiter's store did.

Why not Flask-Limiter: it was the first implementation, and measured here it
cost about a quarter of the CPU time of GET /leaderboard although that route
is exempt, and it cannot take a quota after validation; this module does the
same with the same `limits` strategy and storage in a tenth of the code path.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import RateLimiter, SlidingWindowCounterRateLimiter

from gpuq.config import Settings
from gpuq.errors import RateLimited
from gpuq.store.redis import Breaker

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_PRIMARY_SECONDS = 5.0
"""After a Redis failure, count in memory for this long before trying Redis again (when
no shared Breaker is given; the service passes one set by GPUQ_REDIS_RETRY_SECONDS)."""


@dataclasses.dataclass(frozen=True)
class Usage:
    """What the rate-limit headers report for one limit."""

    limit: int
    remaining: int
    reset_at: int
    """Epoch second when the next unit frees up."""
    retry_after: int
    """Whole seconds to wait when nothing remains (at least 1, at most the window)."""


class RateLimits:
    """Both limits for one worker, on Redis when configured, else (and as fallback) in memory."""

    def __init__(
        self,
        settings: Settings,
        redis_pool: Any | None,
        breaker: Breaker | None = None,
    ):
        self.enabled = settings.ratelimit_enabled
        self._daily = parse_many(settings.daily_limit)
        self._submit = parse_many(settings.submit_limit)
        self._participant = parse_many(settings.participant_limit)
        self._prefix = f"{settings.redis_prefix}:rl"
        self._memory: RateLimiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._primary: RateLimiter = self._memory
        if redis_pool is not None:
            storage = RedisStorage(settings.redis_url, connection_pool=redis_pool, key_prefix=self._prefix)
            self._primary = SlidingWindowCounterRateLimiter(storage)
        self._breaker = breaker or Breaker(RETRY_PRIMARY_SECONDS)

    def take_daily(self, address: str, report: bool) -> Usage | None:
        """Count one request against the daily limit; raises RateLimited when used up.

        Reads the window statistics (a second store round trip) only when `report`.
        """
        return self._take(self._daily, "daily", address, report)

    def take_submission(self, address: str) -> Usage | None:
        """Count one accepted submission; raises RateLimited when used up."""
        return self._take(self._submit, "submit", address, report=True)

    def check_participant(self, participant_id: int) -> None:
        """Raise RateLimited when the participant has no submission left; uses up nothing."""
        if not self.enabled:
            return
        ids = ("participant", str(participant_id))
        for item in self._participant:
            usage = self._stats(item, ids)
            if usage.remaining <= 0:
                raise RateLimited(f"{_DESCRIPTIONS['participant']} ({item})", usage, "participant")

    def take_submitter(self, address: str, participant_id: int | None) -> Usage | None:
        """Use one of `address`'s submissions and, for a participant, one of theirs; raises
        RateLimited (then none is used). Returns the tighter usage."""
        if participant_id is not None:
            self.check_participant(participant_id)  # so that a refusal uses none of the address's
        usage = self.take_submission(address)
        if participant_id is not None:
            mine = self.take_participant(participant_id)
            if usage is None or (mine is not None and mine.remaining < usage.remaining):
                usage = mine
        return usage

    def take_participant(self, participant_id: int) -> Usage | None:
        """Count one accepted submission of the participant; raises RateLimited when used up."""
        return self._take(self._participant, "participant", str(participant_id), report=True)

    def usage(
        self, address: str, participant_id: int | None = None
    ) -> list[tuple[str, RateLimitItem, Usage]]:
        """Every limit that applies to `address` (and the participant) and its usage; uses up nothing."""
        scopes = [("daily", self._daily, address), ("submit", self._submit, address)]
        if participant_id is not None:
            scopes.append(("participant", self._participant, str(participant_id)))
        result = []
        for scope, items, who in scopes:
            for item in items:
                result.append((scope, item, self._stats(item, (scope, who))))
        return result

    def _stats(self, item: RateLimitItem, ids: tuple[str, str]) -> Usage:
        return self._on_store(lambda strategy: _usage(strategy, item, ids))

    def _take(self, items: list[RateLimitItem], scope: str, address: str, report: bool) -> Usage | None:
        if not self.enabled:
            return None
        reported: Usage | None = None
        for item in items:
            allowed, usage = self._hit(item, (scope, address), report)
            if not allowed:
                assert usage is not None
                raise RateLimited(f"{_DESCRIPTIONS[scope]} ({item})", usage, scope)
            if usage is not None and (reported is None or usage.remaining < reported.remaining):
                reported = usage
        return reported

    def _hit(self, item: RateLimitItem, ids: tuple[str, str], report: bool) -> tuple[bool, Usage | None]:
        return self._on_store(lambda strategy: _hit_with(strategy, item, ids, report))

    def _on_store(self, operation: Callable[[RateLimiter], T]) -> T:
        """Run `operation` on Redis, or on the memory counters while Redis fails (the failure policy)."""
        if self._primary is not self._memory and self._breaker.available():
            try:
                return operation(self._primary)
            except Exception as exc:  # any store failure; the policy is to keep limiting in memory
                self._breaker.trip("rate limits, counting in memory meanwhile", exc)
        return operation(self._memory)


_DESCRIPTIONS = {
    "daily": "daily request limit of this address",
    "submit": "submission limit of this address",
    "participant": "submission limit of this participant",
}


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
