"""The leaderboard: ranking rules, the database query, and the Redis index.

Ranking rule (the one place it is decided): higher score first; between equal
scores the earlier submission wins, "earlier" meaning the smaller submission
id (ids are handed out in arrival order by the database). Rank 1 is the best.

Two implementations give the same ranking (a test proves it):

* `DatabaseLeaderboard`: indexed queries on `submissions`; the embedded
  default and the fallback whenever Redis fails.
* `RedisLeaderboard`: a sorted set kept in step on every accepted submission.
  Redis is never the source of truth: when the set is missing, of the wrong
  type, holds garbage, or its size differs from the database's row count it
  is rebuilt from the database (into a temporary key, then RENAME, so readers
  never see a half-built board).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Protocol

import redis
from flask import Flask, current_app
from sqlalchemy import Connection, func, select

from gpuq.config import Settings
from gpuq.store.models import Submission
from gpuq.submissions import StoredSubmission

log = logging.getLogger(__name__)

ID_BITS = 39
"""Bits for the submission id in the composite key: ids up to about 5.5e11."""
MAX_ID = (1 << ID_BITS) - 1
REBUILD_LOCK_MS = 60_000
"""A rebuild lock left by a killed worker expires after this long."""
CENTS = Decimal(100)


@dataclasses.dataclass(frozen=True)
class Entry:
    submission_id: int
    score: Decimal
    submitted_at: dt.datetime

    @classmethod
    def of(cls, submission: StoredSubmission) -> Entry:
        return cls(submission.id, submission.score, submission.created_at)


@dataclasses.dataclass(frozen=True)
class Page:
    entries: list[Entry]
    total: int
    version: bytes | None = None
    """The index version this page was read at; None when read from the database."""


class Leaderboard(Protocol):
    def add(self, entry: Entry) -> int | None:
        """Index an accepted submission; return its rank when cheaply known."""

    def page(self, offset: int, limit: int) -> Page:
        """Entries ranked offset+1 .. offset+limit, and the total count."""

    def version(self) -> bytes | None:
        """An opaque value that changes whenever the ranking may have changed, or None
        when there is none to offer (then pages must not be cached)."""

    def rank(self, entry: Entry) -> int:
        """The 1-based rank of a stored submission."""


def composite_key(score: Decimal, submission_id: int) -> int:
    """An integer that sorts like (score desc, id asc) under ZREVRANGE and stays below 2**53.

    score (0.00-100.00) in cents takes the high 14 bits; the low 39 bits hold
    the id inverted, so that between equal scores the smaller id ranks higher.
    Doubles represent every such integer exactly.
    """
    if not 0 < submission_id <= MAX_ID:
        raise ValueError(f"submission id {submission_id} does not fit the composite key")
    cents = int(score * CENTS)
    return (cents << ID_BITS) | (MAX_ID - submission_id)


def _member(entry: Entry) -> str:
    """The sorted-set member: id and submission time in ms, all the board shows besides the score."""
    millis = int(entry.submitted_at.timestamp() * 1000)
    return f"{entry.submission_id}:{millis}"


def _decode(member: bytes, composite: float) -> Entry:
    """Inverse of _member/composite_key; raises ValueError on anything malformed."""
    id_text, _, millis_text = member.decode("ascii").partition(":")
    submission_id, millis = int(id_text), int(millis_text)
    key = int(composite)
    if key != composite or MAX_ID - (key & MAX_ID) != submission_id:
        raise ValueError(f"index member {member!r} does not match its score")
    score = Decimal(key >> ID_BITS) / CENTS
    submitted_at = dt.datetime.fromtimestamp(millis / 1000, tz=dt.UTC)
    return Entry(submission_id, score.quantize(Decimal("0.01")), submitted_at)


_COUNT = select(func.count()).select_from(Submission)


class DatabaseLeaderboard:
    """Ranking straight from the database (uses index ix_submissions_ranking)."""

    def __init__(self, connect: Callable[[], Connection]):
        self._connect = connect

    def add(self, entry: Entry) -> int | None:
        return None  # the row itself is the index

    def version(self) -> bytes | None:
        return None

    def page(self, offset: int, limit: int) -> Page:
        with self._connect() as connection:
            rows = connection.execute(
                select(Submission.id, Submission.score, Submission.created_at)
                .order_by(Submission.score.desc(), Submission.id)
                .offset(offset)
                .limit(limit)
            ).all()
            total = connection.scalar(_COUNT) or 0
        return Page([Entry(*row) for row in rows], total)

    def rank(self, entry: Entry) -> int:
        # Two range counts on ix_submissions_ranking rather than one OR, which
        # PostgreSQL would answer with a scan of the whole table.
        better_score = select(func.count()).where(Submission.score > entry.score).scalar_subquery()
        earlier_tie = (
            select(func.count())
            .where(Submission.score == entry.score, Submission.id < entry.submission_id)
            .scalar_subquery()
        )
        with self._connect() as connection:
            better = connection.scalar(select(better_score + earlier_tie))
        return (better or 0) + 1

    def count(self) -> int:
        with self._connect() as connection:
            return connection.scalar(_COUNT) or 0

    def all_entries(self, after_id: int = 0, batch: int = 5000) -> Iterator[list[Entry]]:
        """Every submission with id > after_id, a batch at a time (for rebuilding an index)."""
        last = after_id
        with self._connect() as connection:
            while rows := connection.execute(
                select(Submission.id, Submission.score, Submission.created_at)
                .where(Submission.id > last)
                .order_by(Submission.id)
                .limit(batch)
            ).all():
                yield [Entry(*row) for row in rows]
                last = rows[-1][0]


class RedisLeaderboard:
    """The sorted-set index with the database as fallback and as the truth to rebuild from.

    Failure policy, per worker:

    * A Redis error while reading marks the index `stale`: the request is
      answered from the database and the index is verified before the next use.
    * A failed write (a committed submission not indexed) or malformed data
      means entries are missing or wrong: the index is rebuilt on the next use.
    * Every `check_seconds` the index size is compared with the database row
      count. Writes index a row just after committing it, so an index that is
      briefly behind is normal under load; it is rebuilt when it holds more
      entries than the database, is empty while the database is not, or still
      holds fewer entries than the database did one check earlier. So an entry
      lost without any error (say a worker killed between commit and index) is
      repaired within two check intervals.
    """

    def __init__(
        self,
        client: redis.Redis,
        database: DatabaseLeaderboard,
        key: str,
        check_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self._redis = client
        self._db = database
        self.key = key
        self.version_key = f"{key}:version"
        self._check_seconds = check_seconds
        self._monotonic = monotonic
        self._next_check = 0.0  # verify before the first read
        self.stale = True
        self._must_rebuild = False
        self._behind_by_then: int | None = None
        """The database count seen when the index was last found behind it."""
        self._verifying = threading.Lock()

    def _mark_stale(self, why: BaseException, rebuild: bool = False) -> None:
        log.warning("leaderboard index unusable, answering from the database: %r", why)
        self.stale = True
        self._must_rebuild = self._must_rebuild or rebuild

    def add(self, entry: Entry) -> int | None:
        member = _member(entry)
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.zadd(self.key, {member: composite_key(entry.score, entry.submission_id)})
            pipe.incr(self.version_key)
            pipe.zrevrank(self.key, member)
            _, _, rank = pipe.execute()
        except redis.RedisError as exc:
            self._mark_stale(exc, rebuild=True)
            return None
        if self.stale:
            return None  # the index may miss better entries; let the caller ask the database
        return None if rank is None else rank + 1

    def page(self, offset: int, limit: int) -> Page:
        self._verify_if_due()
        if not self.stale:
            try:
                # MULTI/EXEC: the version, the count and the entries are one snapshot.
                pipe = self._redis.pipeline(transaction=True)
                pipe.get(self.version_key)
                pipe.zcard(self.key)
                pipe.zrevrange(self.key, offset, offset + limit - 1, withscores=True)
                version, total, rows = pipe.execute()
                return Page([_decode(m, s) for m, s in rows], total, version)
            except redis.RedisError as exc:
                self._mark_stale(exc)
            except (ValueError, UnicodeDecodeError) as exc:
                self._mark_stale(exc, rebuild=True)
        return self._db.page(offset, limit)

    def version(self) -> bytes | None:
        """The index version (one GET), or None while the index is stale or unversioned."""
        self._verify_if_due()
        if self.stale:
            return None
        try:
            return self._redis.get(self.version_key)
        except redis.RedisError as exc:
            self._mark_stale(exc)
            return None

    def rank(self, entry: Entry) -> int:
        self._verify_if_due()
        if not self.stale:
            try:
                rank = self._redis.zrevrank(self.key, _member(entry))
            except redis.RedisError as exc:
                self._mark_stale(exc)
            else:
                if rank is not None:
                    return rank + 1
                # Not indexed (yet): the database knows; the periodic check repairs a real loss.
        return self._db.rank(entry)

    def _verify_if_due(self) -> None:
        now = self._monotonic()
        if not self.stale and now < self._next_check:
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
            indexed = self._redis.zcard(self.key)
        except redis.ResponseError:  # WRONGTYPE: someone wrote another type under our key
            self._must_rebuild = True
            indexed = -1
        stored = self._db.count()
        behind_since = self._behind_by_then
        self._behind_by_then = None
        if not self._must_rebuild:
            if indexed == stored:
                self.stale = False
                return False
            if 0 < indexed < stored and (behind_since is None or indexed >= behind_since):
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
        temp = f"{self.key}:rebuild:{uuid.uuid4().hex}"
        count, last_id = 0, 0
        try:
            for batch in self._db.all_entries():
                self._redis.zadd(temp, {_member(e): composite_key(e.score, e.submission_id) for e in batch})
                count += len(batch)
                last_id = batch[-1].submission_id
            # A fresh random version, never one a cache may hold from before a flush.
            pipe = self._redis.pipeline(transaction=True)
            if count:
                pipe.rename(temp, self.key)
            else:
                pipe.delete(self.key)
            pipe.set(self.version_key, secrets.randbits(48))
            pipe.execute()
            for batch in self._db.all_entries(after_id=last_id):
                self._redis.zadd(
                    self.key, {_member(e): composite_key(e.score, e.submission_id) for e in batch}
                )
                count += len(batch)
                self._redis.incr(self.version_key)
        finally:
            self._redis.delete(temp, lock)
        log.info("leaderboard index rebuilt from the database: %d entries", count)
        self.stale = False
        self._must_rebuild = False
        return count


EXTENSION = "gpuq.leaderboard"


def init_app(
    app: Flask, settings: Settings, client: redis.Redis | None, connect: Callable[[], Connection]
) -> Leaderboard:
    """The Redis index when Redis is configured, else the database query."""
    database = DatabaseLeaderboard(connect)
    board: Leaderboard = database
    if client is not None:
        board = RedisLeaderboard(
            client, database, f"{settings.redis_prefix}:leaderboard", settings.index_check_seconds
        )
    app.extensions[EXTENSION] = board
    return board


def get_leaderboard(app: Flask | None = None) -> Leaderboard:
    return (app or current_app).extensions[EXTENSION]
