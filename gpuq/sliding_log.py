"""Sliding-log counters for the submission limits: exact, atomic, and seeded from the database.

A submission limit ("10 per hour") is a log of the times its units were
used, one sorted set per limit and client (Redis) or one list (memory). A
check counts the entries inside the window; a take adds one, in the same
step for every limit that applies, or in none when any of them is used up.

The accepted submissions in the database are the truth for these limits, so
a log that does not exist (Redis restarted or flushed, a worker that just
started counting in memory, or simply a client idle for a whole window) is
first seeded from them: the caller is asked for the times of the client's
recent submissions and the check runs again with them. A log never forgets a
stored submission, and two workers seeding one log at once add it once (the
seed is applied only to a log that still does not exist, atomically).
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import redis

CHECK_AND_TAKE = """
-- KEYS: one sorted set per limit (scores: times in ms).
-- ARGV[1]: now (ms); ARGV[2]: "take" or "peek"; ARGV[3]: a unique member for this take;
-- ARGV[4]: JSON [[window_ms, amount, seeds], ...] per key, seeds a list of times or null.
local now = tonumber(ARGV[1])
local spec = cjson.decode(ARGV[4])
local missing = {}
-- A log seeded with nothing leaves no sorted set, so a marker (lost with the log on a
-- flush or restart, like the log itself) says it was seeded.
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key, key .. ':seeded') == 0 then
    local seeds = spec[i][3]
    if type(seeds) ~= 'table' then
      missing[#missing + 1] = i
    else
      for j, at in ipairs(seeds) do
        if at > now - spec[i][1] then
          redis.call('ZADD', key, at, 'seed:' .. at .. ':' .. j)
        end
      end
      redis.call('PEXPIRE', key, spec[i][1])
      redis.call('SET', key .. ':seeded', 1, 'PX', spec[i][1])
    end
  end
end
if #missing > 0 then
  return {'seed', missing}
end
local refused = 0
local counts = {}
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - spec[i][1])
  counts[i] = redis.call('ZCARD', key)
  if refused == 0 and counts[i] >= spec[i][2] then
    refused = i
  end
end
if ARGV[2] == 'take' and refused == 0 then
  for i, key in ipairs(KEYS) do
    redis.call('ZADD', key, now, ARGV[3])
    redis.call('PEXPIRE', key, spec[i][1])
    counts[i] = counts[i] + 1
  end
end
local result = {'done', refused}
for i, key in ipairs(KEYS) do
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  result[#result + 1] = counts[i]
  result[#result + 1] = oldest[2] or ''
end
return result
"""


@dataclasses.dataclass(frozen=True)
class Limit:
    """One log: `amount` units per `window_ms`, for one client (`key` names both)."""

    key: str
    amount: int
    window_ms: int


@dataclasses.dataclass(frozen=True)
class Count:
    """A log's state after a check: units used inside the window, and the time of the oldest
    of them (ms; None when there is none), which frees one window later."""

    used: int
    oldest_ms: int | None


@dataclasses.dataclass(frozen=True)
class Outcome:
    refused: int | None
    """The index of the first used-up limit (then nothing was taken), or None."""
    counts: list[Count]


Seeds = dict[int, list[int]]
"""Per limit index, the times (ms) of the client's stored submissions inside its window."""


class Store(Protocol):
    def run(
        self, limits: Sequence[Limit], now_ms: int, take: bool, seeds: Seeds | None
    ) -> Outcome | list[int]:
        """Check (and with `take`, use one unit of) every limit; the indexes of the logs that
        do not exist yet when `seeds` is None and any is missing."""


class RedisStore:
    """The logs in Redis: one Lua script per check, so the check and the take are atomic
    across every worker and host."""

    def __init__(self, client: redis.Redis):
        self._client = client
        self._script = client.register_script(CHECK_AND_TAKE)

    def forget(self, prefix: str) -> None:
        """Delete every log (and seeded marker) whose key starts with `prefix`, so each is
        seeded again from the database when next checked."""
        pattern = "".join(f"\\{c}" if c in "*?[]\\" else c for c in prefix) + "*"
        batch: list[bytes] = []
        for key in self._client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) == 1000:
                self._client.unlink(*batch)
                batch = []
        if batch:
            self._client.unlink(*batch)

    def run(
        self, limits: Sequence[Limit], now_ms: int, take: bool, seeds: Seeds | None
    ) -> Outcome | list[int]:
        spec = [
            [limit.window_ms, limit.amount, None if seeds is None else seeds.get(i, [])]
            for i, limit in enumerate(limits)
        ]
        reply: list[Any] = self._script(
            keys=[limit.key for limit in limits],
            args=[now_ms, "take" if take else "peek", uuid.uuid4().hex, json.dumps(spec)],
        )
        if _text(reply[0]) == "seed":
            return [int(i) - 1 for i in reply[1]]
        refused = int(reply[1])
        counts = [
            Count(
                int(reply[2 + 2 * i]),
                int(float(_text(reply[3 + 2 * i]))) if _text(reply[3 + 2 * i]) else None,
            )
            for i in range(len(limits))
        ]
        return Outcome(refused - 1 if refused else None, counts)


class MemoryStore:
    """The same logs in this process (the embedded mode, and the fallback while Redis fails)."""

    SWEEP_EVERY = 1000
    """Takes between sweeps that drop logs whose every entry has left its window."""

    def __init__(self) -> None:
        self._logs: dict[str, list[int]] = {}
        self._windows: dict[str, int] = {}
        self._lock = threading.Lock()
        self._takes = 0

    def run(
        self, limits: Sequence[Limit], now_ms: int, take: bool, seeds: Seeds | None
    ) -> Outcome | list[int]:
        with self._lock:
            missing = [i for i, limit in enumerate(limits) if limit.key not in self._logs]
            if missing and seeds is None:
                return missing
            for i in missing:
                assert seeds is not None
                self._logs[limits[i].key] = sorted(
                    at for at in seeds.get(i, []) if at > now_ms - limits[i].window_ms
                )
            logs = []
            refused = None
            for i, limit in enumerate(limits):
                log = [at for at in self._logs[limit.key] if at > now_ms - limit.window_ms]
                self._logs[limit.key] = log
                self._windows[limit.key] = limit.window_ms
                logs.append(log)
                if refused is None and len(log) >= limit.amount:
                    refused = i
            if take and refused is None:
                for log in logs:
                    log.append(now_ms)
                self._takes += 1
                if self._takes % self.SWEEP_EVERY == 0:
                    self._sweep(now_ms)
            return Outcome(refused, [Count(len(log), log[0] if log else None) for log in logs])

    def _sweep(self, now_ms: int) -> None:
        for key in [k for k, log in self._logs.items() if not log or log[-1] <= now_ms - self._windows[k]]:
            del self._logs[key]
            del self._windows[key]


def check(
    store: Store,
    limits: Sequence[Limit],
    now_ms: int,
    take: bool,
    seed: Callable[[int], list[int]],
) -> Outcome:
    """Check `limits` on `store` (taking one unit of each with `take`), seeding a log that does
    not exist yet with `seed(index)`: the times of the client's stored submissions."""
    first = store.run(limits, now_ms, take, None)
    if isinstance(first, Outcome):
        return first
    again = store.run(limits, now_ms, take, {i: seed(i) for i in first})
    assert isinstance(again, Outcome), "a seeded check always completes"
    return again


def window_ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
