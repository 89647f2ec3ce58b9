"""The Redis leaderboard index: two sorted sets kept in step with the database.

One set per view (gpuq.leaderboard.rule), scored by `rule.composite_key`, so
that Redis's own order is the ranking rule. A participant's place in view best
is replaced atomically by `index.lua` (package data), which compares composite
keys: the same rule. Redis is never the source of truth: when a set is
missing, of the wrong type, holds garbage, or its size differs from the
database's row count it is rebuilt from the database (into a temporary key,
then RENAME, so readers never see a half-built board).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from importlib.resources import files
from typing import Any, cast

import redis
from sqlalchemy import Connection

from gpuq import metrics
from gpuq.config import Settings
from gpuq.leaderboard.board import Entry, Leaderboard, Page
from gpuq.leaderboard.query import DatabaseLeaderboard
from gpuq.leaderboard.rule import DEFAULT_VIEW, composite_key, from_composite
from gpuq.store.redis import Breaker, is_outage

log = logging.getLogger(__name__)

REBUILD_LOCK_MS = 60_000
"""A rebuild lock left by a killed worker expires after this long."""
_INDEX = files("gpuq.leaderboard").joinpath("index.lua").read_text()
"""Index one ranked entry, atomically (see the script's comments)."""


MEASURED = "m"
"""The member's last field when the entry is a measured result."""


def _member(entry: Entry) -> str:
    """The sorted-set member: id, submission time in ms, the participant's name (absent when
    anonymous) and, for a measured result (always a participant's), MEASURED: all the board
    shows besides the score. Names never hold ":"."""
    millis = int(entry.submitted_at.timestamp() * 1000)
    member = f"{entry.submission_id}:{millis}"
    if entry.participant is None:
        return member
    return f"{member}:{entry.participant}:{MEASURED}" if entry.measured else f"{member}:{entry.participant}"


COMPLETE_BASE = 1 << 52
"""A rebuilt index's version is at least this (see RedisLeaderboard)."""


def _complete(version: object) -> bool:
    """Whether an index version (bytes from GET, an int from INCR, or None) is one a
    rebuild started: at least COMPLETE_BASE."""
    if not isinstance(version, bytes | int):
        return False
    try:
        return int(version) >= COMPLETE_BASE
    except ValueError:  # not a number: someone else's value under our key
        return False


def _decode(member: bytes, composite: float) -> Entry:
    """Inverse of _member/composite_key; raises ValueError on anything malformed."""
    id_text, millis_text, *rest = member.decode("ascii").split(":")
    submission_id, millis = int(id_text), int(millis_text)
    key = int(composite)
    score, keyed_id = from_composite(key)
    measured = len(rest) == 2 and rest[1] == MEASURED
    if key != composite or keyed_id != submission_id or len(rest) > 2 or (len(rest) == 2 and not measured):
        raise ValueError(f"index member {member!r} does not match its score")
    submitted_at = dt.datetime.fromtimestamp(millis / 1000, tz=dt.UTC)
    return Entry(submission_id, score, submitted_at, rest[0] if rest else None, measured)


class RedisLeaderboard:
    """The sorted-set index with the database as fallback and as the truth to rebuild from.

    Keys: `key` (view all), `key:best` (view best), `key:best:holders` (which
    member holds each participant's place in view best), `key:version`.

    The version says whether the index is complete: a rebuild sets it, in the
    MULTI/EXEC that swaps the sets in, to a random number of at least
    COMPLETE_BASE, and writes only INCR it. After a restart or a flush it is
    missing, or counts up from 1 (INCR of a missing key): below COMPLETE_BASE.

    Failure policy, per worker:

    * Every read and write reads the version in the same round trip (it already
      did, for the page cache). A Redis restarted empty, or flushed, loses it
      (even when the sets already hold entries written since): the index is
      then known incomplete, nothing is answered or ranked from it, and it is
      rebuilt at once.

    * A Redis error while reading marks the index `stale`: the request is
      answered from the database and the index is verified before the next use.
    * A failed write (a committed submission not indexed) or malformed data
      means entries are missing or wrong: the index is rebuilt on the next use.
    * Every `check_seconds` the sizes of both sets are compared with the
      database's counts. Writes index a row just after committing it, so an
      index that is briefly behind is normal under load; it is rebuilt when it
      holds more entries than the database, is empty while the database is
      not, or still holds fewer entries than the database did one check
      earlier. So an entry lost without any error (say a worker killed between
      commit and index) is repaired within two check intervals.
    * A rescoring rebuilds it at once (`refresh`); a moderation rewrites only the
      entries of the one submission or participant concerned (`reindex`).
    """

    def __init__(
        self,
        client: redis.Redis,
        database: DatabaseLeaderboard,
        key: str,
        check_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
        breaker: Breaker | None = None,
    ):
        self._redis = client
        self._db = database
        self.key = key
        self.keys = {"all": key, "best": f"{key}:best"}
        self.holders_key = f"{key}:best:holders"
        self.version_key = f"{key}:version"
        self._index_sha = hashlib.sha1(_INDEX.encode()).hexdigest()
        self._check_seconds = check_seconds
        self._monotonic = monotonic
        self._breaker = breaker or Breaker(0.0, monotonic)
        self._next_check = 0.0  # verify before the first read
        self.stale = True
        self._must_rebuild = False
        self._behind_by_then: tuple[int, int] | None = None
        """The database counts seen when the index was last found behind them."""
        self._verifying = threading.Lock()

    def _mark_stale(self, why: BaseException, rebuild: bool = False) -> None:
        log.warning("leaderboard index unusable, answering from the database: %r", why)
        if is_outage(why):
            self._breaker.trip("leaderboard_index", why, "answering from the database meanwhile")
        self.stale = True
        self._must_rebuild = self._must_rebuild or rebuild

    def _incomplete(self) -> None:
        """The completeness marker is gone (Redis restarted empty, or flushed): stop trusting
        the index and rebuild it now (one verifier per worker; a Redis lock across workers),
        answering from the database meanwhile."""
        if not self.stale:
            log.warning("leaderboard index incomplete (Redis lost it): rebuilding from the database")
        self.stale = self._must_rebuild = True
        self._verify_if_due()

    def _index(self, pipe: redis.client.Pipeline, entry: Entry, keys: tuple[str, str, str]) -> None:
        """Queue the script that indexes one ranked entry into (all, best, holders).

        By EVALSHA: redis-py's Script objects would ask SCRIPT EXISTS on every pipeline,
        a round trip more on each submission; `_run` loads the script when Redis lacks it.
        """
        composite = composite_key(entry.score, entry.submission_id)
        pipe.evalsha(self._index_sha, 3, *keys, _member(entry), composite, entry.participant or "")

    def _run(self, fill: Callable[[redis.client.Pipeline], None]) -> list[Any]:
        """Execute a pipeline filled by `fill`; when Redis has lost the script (restarted,
        flushed), load it and run the pipeline once more. The index writes are idempotent;
        the version then moves one step more, which costs a page cache miss, nothing else."""
        for attempt in range(2):
            pipe = self._redis.pipeline(transaction=False)
            fill(pipe)
            try:
                return pipe.execute()
            except redis.exceptions.NoScriptError:
                if attempt:
                    raise
                self._redis.script_load(_INDEX)
        raise AssertionError("unreachable")

    def add(self, entry: Entry) -> int | None:
        def fill(pipe: redis.client.Pipeline) -> None:
            self._index(pipe, entry, (self.keys["all"], self.keys["best"], self.holders_key))
            pipe.incr(self.version_key)
            pipe.zrevrank(self.keys["all"], _member(entry))

        if not self._breaker.available():  # Redis just failed: this entry is missed, rebuild later
            self.stale = self._must_rebuild = True
            return None
        try:
            *_, version, rank = self._run(fill)
        except redis.RedisError as exc:
            self._mark_stale(exc, rebuild=True)
            return None
        if not _complete(version):
            self._incomplete()
            return None
        if self.stale:
            return None  # the index may miss better entries; let the caller ask the database
        return None if rank is None else rank + 1

    def page(self, offset: int, limit: int, view: str = DEFAULT_VIEW) -> Page:
        self._verify_if_due()
        key = self.keys[view]
        if not self.stale:
            try:
                # MULTI/EXEC: the version, the count and the entries are one snapshot.
                pipe = self._redis.pipeline(transaction=True)
                pipe.get(self.version_key)
                pipe.zcard(key)
                pipe.zrevrange(key, offset, offset + limit - 1, withscores=True)
                version, total, rows = pipe.execute()
                if _complete(version):
                    return Page([_decode(m, s) for m, s in rows], total, version)
                self._incomplete()
            except redis.RedisError as exc:
                self._mark_stale(exc)
            except (ValueError, UnicodeDecodeError) as exc:
                self._mark_stale(exc, rebuild=True)
        metrics.index_fallback("page")
        return self._db.page(offset, limit, view)

    def version(self) -> bytes | None:
        """The index version (one GET), or None while the index is stale or unversioned."""
        self._verify_if_due()
        if self.stale:
            return None
        try:
            # cast: redis-py gives its sync and async clients one return type (Awaitable | Any).
            version = cast("bytes | None", self._redis.get(self.version_key))
        except redis.RedisError as exc:
            self._mark_stale(exc)
            return None
        if not _complete(version):
            self._incomplete()
            return None
        return version

    def rank(self, entry: Entry, view: str = "all") -> int:
        self._verify_if_due()
        if not self.stale:
            try:
                pipe = self._redis.pipeline(transaction=False)
                pipe.zrevrank(self.keys[view], _member(entry))
                pipe.get(self.version_key)
                rank, version = pipe.execute()
            except redis.RedisError as exc:
                self._mark_stale(exc)
            else:
                if not _complete(version):
                    self._incomplete()
                elif rank is not None:
                    return int(rank) + 1
                # Not indexed (yet): the database knows; the periodic check repairs a real loss.
        metrics.index_fallback("rank")
        return self._db.rank(entry, view)

    def reindex(self, *, submission_id: int | None = None, participant_id: int | None = None) -> None:
        """Rewrite those entries from the database in one MULTI/EXEC: readers see the index
        before or after. (A submission of the same participant indexed in between can
        leave them two entries in view best; the periodic count check rebuilds then.)"""
        if not self._breaker.available():
            self.stale = self._must_rebuild = True
            return
        entries = self._db.owned(submission_id=submission_id, participant_id=participant_id)
        keys_all, keys_best = self.keys["all"], self.keys["best"]
        try:
            pipe = self._redis.pipeline(transaction=True)
            for entry, _ranked, _leads in entries:
                pipe.zrem(keys_all, _member(entry))
                pipe.zrem(keys_best, _member(entry))
                if entry.participant is not None:
                    pipe.hdel(self.holders_key, entry.participant)
            for entry, ranked, leads in entries:
                member, composite = _member(entry), composite_key(entry.score, entry.submission_id)
                if ranked:
                    pipe.zadd(keys_all, {member: composite})
                if leads:
                    pipe.zadd(keys_best, {member: composite})
                    if entry.participant is not None:
                        pipe.hset(self.holders_key, entry.participant, member)
            pipe.incr(self.version_key)
            pipe.execute()
        except redis.RedisError as exc:
            self._mark_stale(exc, rebuild=True)

    def refresh(self) -> None:
        """Rebuild now, waiting for a rebuild another worker may be running (it may have
        read the database before the change); on failure the next use rebuilds."""
        if not self._breaker.available():
            self.stale = self._must_rebuild = True
            return
        deadline = self._monotonic() + REBUILD_LOCK_MS / 1000
        try:
            while self.rebuild() is None:
                if self._monotonic() >= deadline:
                    raise redis.RedisError("the index rebuild lock stayed taken")
                time.sleep(0.05)
        except redis.RedisError as exc:
            self._mark_stale(exc, rebuild=True)

    def _verify_if_due(self) -> None:
        now = self._monotonic()
        if not self.stale and now < self._next_check:
            return
        if not self._breaker.available():  # stay on the database until Redis may be back
            self.stale = True
            return
        # One verifier per worker at a time; meanwhile the others carry on (from the
        # database while the index is stale) instead of all rebuilding at once.
        if not self._verifying.acquire(blocking=False):
            return
        try:
            self.verify()
        except redis.RedisError as exc:
            self._mark_stale(exc)
        else:
            self._next_check = now + self._check_seconds
        finally:
            self._verifying.release()

    def verify(self) -> bool:
        """Check the index against the database (see the class docstring); rebuild if needed.

        Returns True when a rebuild happened. Raises redis.RedisError when
        Redis is unreachable (the index then stays stale).
        """
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.zcard(self.keys["all"])
            pipe.zcard(self.keys["best"])
            pipe.get(self.version_key)
            *counts, version = pipe.execute()
            indexed = tuple(counts)
            if not _complete(version):  # never built, or lost by a restart or a flush
                self._must_rebuild = True
        except redis.ResponseError:  # WRONGTYPE: someone wrote another type under our keys
            self._must_rebuild = True
            indexed = (-1, -1)
        stored = self._db.counts()
        behind_since = self._behind_by_then
        self._behind_by_then = None
        if not self._must_rebuild:
            if indexed == stored:
                self.stale = False
                return False
            behind = all(0 < i <= s for i, s in zip(indexed, stored, strict=True))
            if behind and (behind_since is None or indexed[0] >= behind_since[0]):
                self._behind_by_then = stored  # maybe in-flight writes: look again next check
                self.stale = False
                return False
        return self.rebuild() is not None

    def rebuild(self) -> int | None:
        """Rebuild the index from the database atomically; returns the number of entries.

        Across workers one rebuild runs at a time (a Redis lock that expires by
        itself); when another holds it this returns None and the index stays
        stale until the next check. Submissions committed while the rebuild
        runs are caught up after the RENAME; one committed out of id order in
        that instant can still be missed, and the periodic check repairs it.
        """
        lock = f"{self.key}:rebuilding"
        if not self._redis.set(lock, "1", nx=True, px=REBUILD_LOCK_MS):
            return None
        suffix = f":rebuild:{uuid.uuid4().hex}"
        finals = (self.keys["all"], self.keys["best"], self.holders_key)
        temps = (finals[0] + suffix, finals[1] + suffix, finals[2] + suffix)
        count, last_id, written = 0, 0, set()
        try:
            for batch in self._db.all_entries():
                written |= self._write_batch(batch, temps)
                count += len(batch)
                last_id = batch[-1][0].submission_id
            # Swap in all three at once; a fresh random version, never one a cache
            # may hold from before a flush.
            pipe = self._redis.pipeline(transaction=True)
            for temp, final in zip(temps, finals, strict=True):
                pipe.delete(final)
                if temp in written:
                    pipe.rename(temp, final)
            pipe.set(self.version_key, COMPLETE_BASE + secrets.randbits(48))
            pipe.execute()
            for batch in self._db.all_entries(after_id=last_id):

                def fill(pipe: redis.client.Pipeline, batch: list[tuple[Entry, bool]] = batch) -> None:
                    for entry, _leads in batch:
                        self._index(pipe, entry, finals)
                    pipe.incr(self.version_key)

                self._run(fill)
                count += len(batch)
        finally:
            self._redis.delete(*temps, lock)
        metrics.index_rebuilt()
        log.info(
            "leaderboard index rebuilt from the database: %d entries",
            count,
            extra={"event": "index.rebuild", "entries": count},
        )
        self.stale = False
        self._must_rebuild = False
        return count

    def _write_batch(self, batch: list[tuple[Entry, bool]], keys: tuple[str, str, str]) -> set[str]:
        """Write a batch of (entry, leads) into fresh keys; returns the keys written to."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(keys[0], {_member(e): composite_key(e.score, e.submission_id) for e, _ in batch})
        written = {keys[0]}
        leading = {_member(e): composite_key(e.score, e.submission_id) for e, leads in batch if leads}
        if leading:
            pipe.zadd(keys[1], leading)
            written.add(keys[1])
        holders = {e.participant: _member(e) for e, leads in batch if leads and e.participant}
        if holders:
            pipe.hset(keys[2], mapping=holders)
            written.add(keys[2])
        pipe.execute()
        return written


def make_leaderboard(
    settings: Settings,
    client: redis.Redis | None,
    connect: Callable[[], Connection],
    breaker: Breaker | None = None,
) -> Leaderboard:
    """The Redis index when Redis is configured, else the database query."""
    database = DatabaseLeaderboard(connect)
    if client is None:
        return database
    return RedisLeaderboard(
        client,
        database,
        f"{settings.redis_prefix}:leaderboard",
        settings.index_check_seconds,
        breaker=breaker,
    )
