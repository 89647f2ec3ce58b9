"""Fair-use limits: who the client is, how much it may do, and the headers that say so.

Two limits, both per client address and both sliding-window counters:

* the daily request limit (`Settings.daily_limit`, default 200 per day),
  counted over every limited route together: a Flask-Limiter application
  limit, checked before the view runs. Health, leaderboard and docs are
  exempt (`exempt()`).
* the submission limit (`Settings.submit_limit`, default 10 per hour),
  taken by `SubmissionQuota.acquire` only after a submission has passed
  validation, so invalid submissions do not use it up. The take is one atomic
  Redis script, so it is exact across any number of workers and hosts.

Client address: the socket peer. With `GPUQ_TRUSTED_PROXIES=N` werkzeug's
ProxyFix takes the address N hops back in X-Forwarded-For; otherwise that
header is ignored, so it cannot buy a fresh quota.

Failure policy when Redis is unreachable (chosen, tested, logged): both limits
fall back to counters in the worker's memory. Limits then hold per worker
process (exact in the embedded single-worker mode; at most workers x limit
across a deployment) until Redis answers again, which Flask-Limiter re-checks
with exponential back-off. No request fails because the limiter's store did.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import RateLimiter, SlidingWindowCounterRateLimiter

from gpuq.config import Settings
from gpuq.errors import RateLimited

log = logging.getLogger(__name__)

EXTENSION = "gpuq.ratelimit"
STRATEGY = "sliding-window-counter"


def client_address() -> str:
    """The address quotas are counted against (see the module docstring)."""
    return request.remote_addr or "unknown"


@dataclasses.dataclass(frozen=True)
class Usage:
    """What a rate-limit header reports: the limit, what remains, and the reset epoch second."""

    limit: int
    remaining: int
    reset_at: int
    retry_after: int


class SubmissionQuota:
    """The per-address submission limit, taken after validation."""

    def __init__(self, limiter: Limiter, limits: list[RateLimitItem], prefix: str, enabled: bool):
        self._limiter = limiter
        self._enabled = enabled
        self._limits = limits
        self._prefix = prefix
        self._fallback: RateLimiter = SlidingWindowCounterRateLimiter(MemoryStorage())

    def _strategy(self) -> RateLimiter:
        # Flask-Limiter's own strategy: its in-memory fallback while Redis is marked dead.
        return self._limiter.limiter

    def acquire(self, address: str) -> Usage:
        """Use one submission of `address`'s quota, or raise RateLimited.

        Each limit is hit atomically; when a later one of several limits fails,
        the earlier ones stay used (the client did ask).
        """
        if not self._enabled:
            return Usage(0, 0, 0, 0)
        usage: Usage | None = None
        for item in self._limits:
            args = (self._prefix, "submit", address)
            try:
                strategy = self._strategy()
                allowed = strategy.hit(item, *args)
                reset, remaining = strategy.get_window_stats(item, *args)
            except Exception as exc:  # the storage failed; see the failure policy
                log.warning("rate-limit storage failed, counting in memory: %r", exc)
                allowed = self._fallback.hit(item, *args)
                reset, remaining = self._fallback.get_window_stats(item, *args)
            reset_at = math.ceil(reset)
            if not allowed:
                g.gpuq_rate_usage = Usage(item.amount, 0, reset_at, _seconds_until(reset, item))
                raise RateLimited(str(item), retry_after=_seconds_until(reset, item), reset_at=reset_at)
            if usage is None or remaining < usage.remaining:
                usage = Usage(item.amount, remaining, reset_at, _seconds_until(reset, item))
        assert usage is not None
        g.gpuq_rate_usage = usage
        return usage


def _seconds_until(epoch: float, item: RateLimitItem) -> int:
    """Whole seconds to wait until `epoch`: at least 1, never more than the limit's window."""
    return min(item.get_expiry(), max(1, math.ceil(epoch - time.time())))


@dataclasses.dataclass
class RateLimits:
    limiter: Limiter
    submissions: SubmissionQuota


def init_app(app: Flask, settings: Settings, redis_pool: Any | None) -> RateLimits:
    """Configure both limits for `app`; `redis_pool` is the worker's Redis pool or None."""
    storage_options: dict[str, Any] = {}
    if redis_pool is not None:
        storage_options["connection_pool"] = redis_pool
    prefix = f"{settings.redis_prefix}:rl"
    limiter = Limiter(
        key_func=client_address,
        application_limits=[settings.daily_limit],
        storage_uri=settings.redis_url or "memory://",
        storage_options=storage_options,
        strategy=STRATEGY,
        key_prefix=prefix,
        in_memory_fallback_enabled=True,
        swallow_errors=True,
        headers_enabled=False,  # one place writes rate-limit headers: add_headers below
        enabled=settings.ratelimit_enabled,
    )
    limiter.init_app(app)
    quota = SubmissionQuota(limiter, parse_many(settings.submit_limit), prefix, settings.ratelimit_enabled)
    limits = RateLimits(limiter, quota)
    app.extensions[EXTENSION] = limits
    app.after_request(add_headers)
    return limits


def exempt(view: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a view as outside every limit (it must be registered on the app afterwards)."""
    view._gpuq_exempt = True  # type: ignore[attr-defined]
    return view


def apply_exemptions(app: Flask) -> None:
    limiter = get_limits(app).limiter
    for view in app.view_functions.values():
        if getattr(view, "_gpuq_exempt", False):
            limiter.exempt(view)


def get_limits(app: Flask | None = None) -> RateLimits:
    return (app or current_app).extensions[EXTENSION]


def current_usage() -> Usage | None:
    """The usage to report for this request: the submission limit if taken, else the daily one."""
    usage = g.get("gpuq_rate_usage")
    if usage is not None:
        return usage
    limit = get_limits().limiter.current_limit
    if limit is None:
        return None
    try:
        reset = limit.window.reset_time
        return Usage(
            limit.limit.amount, limit.remaining, math.ceil(reset), _seconds_until(reset, limit.limit)
        )
    except Exception as exc:  # storage failed between the check and now
        log.warning("rate-limit storage failed while reading usage: %r", exc)
        return None


def add_headers(response: Response) -> Response:
    """X-RateLimit-Limit/Remaining/Reset on every limited response; Retry-After on 429."""
    usage = current_usage()
    if usage is not None and usage.limit:
        response.headers["X-RateLimit-Limit"] = str(usage.limit)
        response.headers["X-RateLimit-Remaining"] = str(usage.remaining)
        response.headers["X-RateLimit-Reset"] = str(usage.reset_at)
        if response.status_code == 429 and "Retry-After" not in response.headers:
            response.headers["Retry-After"] = str(usage.retry_after)
    return response
