"""The leaderboard: ranking rules, the database query, and the Redis index.

Ranking rule (the one place it is decided): higher score first; between equal
scores the earlier submission wins, "earlier" meaning the smaller submission
id (ids are handed out in arrival order by the database). Rank 1 is the best.

Two views of the same ranking (disqualified submissions and participants are
in neither):

* `all`: every ranked submission (`submissions.ranked`).
* `best` (the default): each participant's best submission, their earliest
  on a tie, and every anonymous submission on its own (`submissions.leads`).

Two implementations give the same ranking (a test proves it):

* `DatabaseLeaderboard`: indexed queries on `submissions`; the embedded
  default and the fallback whenever Redis fails.
* `RedisLeaderboard`: two sorted sets (one per view) kept in step on every
  accepted submission; a participant's place in the `best` set is replaced
  atomically by a Lua script applying the same rule.
  Redis is never the source of truth: when the set is missing, of the wrong
  type, holds garbage, or its size differs from the database's row count it
  is rebuilt from the database (into a temporary key, then RENAME, so readers
  never see a half-built board).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, Protocol

import redis
from flask import Flask, current_app
from sqlalchemy import Connection, func, or_, select

from gpuq.config import Settings
from gpuq.store.models import Participant, Submission
from gpuq.submissions import StoredSubmission

log = logging.getLogger(__name__)

ID_BITS = 39
"""Bits for the submission id in the composite key: ids up to about 5.5e11."""
MAX_ID = (1 << ID_BITS) - 1
REBUILD_LOCK_MS = 60_000
"""A rebuild lock left by a killed worker expires after this long."""
CENTS = Decimal(100)


VIEWS = ("best", "all")
DEFAULT_VIEW = "best"


@dataclasses.dataclass(frozen=True)
class Entry:
    submission_id: int
    score: Decimal
    submitted_at: dt.datetime
    participant: str | None = None
    """The participant's name; None for an anonymous submission."""

    @classmethod
    def of(cls, submission: StoredSubmission) -> Entry:
        return cls(submission.id, submission.score, submission.created_at, submission.participant)


@dataclasses.dataclass(frozen=True)
class Page:
    entries: list[Entry]
    total: int
    version: bytes | None = None
    """The index version this page was read at; None when read from the database."""


class Leaderboard(Protocol):
    def add(self, entry: Entry) -> int | None:
        """Index an accepted, ranked submission; return its rank in view `all` when cheaply known."""

    def page(self, offset: int, limit: int, view: str = DEFAULT_VIEW) -> Page:
        """Entries ranked offset+1 .. offset+limit in `view`, and the view's total count."""

    def version(self) -> bytes | None:
        """An opaque value that changes whenever the ranking may have changed, or None
        when there is none to offer (then pages must not be cached)."""

    def rank(self, entry: Entry, view: str = "all") -> int:
        """The 1-based rank of a stored, ranked submission in `view` (in `best` it must lead)."""

    def refresh(self) -> None:
        """Bring the whole index in line with the database after a rescoring."""

    def reindex(self, *, submission_id: int | None = None, participant_id: int | None = None) -> None:
        """Bring one submission's places (with all its participant's submissions: their
        best entry may change), or one participant's, in line with the database after a
        moderation."""


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
    """The sorted-set member: id, submission time in ms and the participant's name (absent
    when anonymous): all the board shows besides the score. Names never hold ":"."""
    millis = int(entry.submitted_at.timestamp() * 1000)
    member = f"{entry.submission_id}:{millis}"
    return member if entry.participant is None else f"{member}:{entry.participant}"


def _decode(member: bytes, composite: float) -> Entry:
    """Inverse of _member/composite_key; raises ValueError on anything malformed."""
    id_text, millis_text, *name = member.decode("ascii").split(":")
    submission_id, millis = int(id_text), int(millis_text)
    key = int(composite)
    if key != composite or MAX_ID - (key & MAX_ID) != submission_id or len(name) > 1:
        raise ValueError(f"index member {member!r} does not match its score")
    score = Decimal(key >> ID_BITS) / CENTS
    submitted_at = dt.datetime.fromtimestamp(millis / 1000, tz=dt.UTC)
    return Entry(submission_id, score.quantize(Decimal("0.01")), submitted_at, name[0] if name else None)


TABLE = Submission.__table__
PARTICIPANTS = Participant.__table__
_FLAG = {"all": TABLE.c.ranked, "best": TABLE.c.leads}
_ENTRIES = select(TABLE.c.id, TABLE.c.score, TABLE.c.created_at, PARTICIPANTS.c.name).outerjoin(
    PARTICIPANTS, PARTICIPANTS.c.id == TABLE.c.participant_id
)
_COUNTS = select(func.count().filter(TABLE.c.ranked), func.count().filter(TABLE.c.leads))


class DatabaseLeaderboard:
    """Ranking straight from the database (partial indexes ix_submissions_ranked and _leading)."""

    def __init__(self, connect: Callable[[], Connection]):
        self._connect = connect

    def add(self, entry: Entry) -> int | None:
        return None  # the row itself is the index

    def version(self) -> bytes | None:
        return None

    def refresh(self) -> None:
        return None

    def reindex(self, *, submission_id: int | None = None, participant_id: int | None = None) -> None:
        return None

    def owned(
        self, *, submission_id: int | None = None, participant_id: int | None = None
    ) -> list[tuple[Entry, bool, bool]]:
        """(entry, ranked, leads) of a participant's submissions, or of one submission and,
        when it has a participant, all of theirs."""
        if participant_id is not None:
            mine = TABLE.c.participant_id == participant_id
        else:
            owner = select(TABLE.c.participant_id).where(TABLE.c.id == submission_id).scalar_subquery()
            mine = or_(TABLE.c.id == submission_id, TABLE.c.participant_id == owner)
        with self._connect() as connection:
            rows = connection.execute(_ENTRIES.add_columns(TABLE.c.ranked, TABLE.c.leads).where(mine)).all()
        return [(Entry(*row[:4]), row[4], row[5]) for row in rows]

    def page(self, offset: int, limit: int, view: str = DEFAULT_VIEW) -> Page:
        flag = _FLAG[view]
        with self._connect() as connection:
            rows = connection.execute(
                _ENTRIES.where(flag).order_by(TABLE.c.score.desc(), TABLE.c.id).offset(offset).limit(limit)
            ).all()
            total = connection.scalar(select(func.count()).where(flag)) or 0
        return Page([Entry(*row) for row in rows], total)

    def rank(self, entry: Entry, view: str = "all") -> int:
        # Two range counts on the view's partial index rather than one OR, which
        # PostgreSQL would answer with a scan of the whole table.
        flag = _FLAG[view]
        better_score = select(func.count()).where(flag, TABLE.c.score > entry.score).scalar_subquery()
        earlier_tie = (
            select(func.count())
            .where(flag, TABLE.c.score == entry.score, TABLE.c.id < entry.submission_id)
            .scalar_subquery()
        )
        with self._connect() as connection:
            better = connection.scalar(select(better_score + earlier_tie))
        return (better or 0) + 1

    def counts(self) -> tuple[int, int]:
        """How many submissions each view holds: (all, best)."""
        with self._connect() as connection:
            ranked, leading = connection.execute(_COUNTS).one()
        return ranked, leading

    def all_entries(self, after_id: int = 0, batch: int = 5000) -> Iterator[list[tuple[Entry, bool]]]:
        """Every ranked submission with id > after_id and whether it leads, a batch at a time
        (for rebuilding an index)."""
        last = after_id
        with self._connect() as connection:
            while rows := connection.execute(
                _ENTRIES.add_columns(TABLE.c.leads)
                .where(TABLE.c.ranked, TABLE.c.id > last)
                .order_by(TABLE.c.id)
                .limit(batch)
            ).all():
                yield [(Entry(*row[:4]), row[4]) for row in rows]
                last = rows[-1][0]


# Index one ranked entry, atomically. KEYS: the all set, the best set, the holders hash
# (participant name -> their member in the best set). ARGV: member, composite key, the
# participant's name ("" when anonymous).
# * A member already in the all set with another key was indexed by a rebuild after a
#   rescoring: this write carries the old score and is dropped.
# * A participant's entry replaces their current one in the best set only when its
#   composite key is higher (the ranking rule); an anonymous entry stands alone.
_INDEX = """
local indexed = redis.call('ZSCORE', KEYS[1], ARGV[1])
if indexed then
  if tonumber(indexed) ~= tonumber(ARGV[2]) then return 0 end
else
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
if ARGV[3] == '' then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  return 1
end
local old = redis.call('HGET', KEYS[3], ARGV[3])
if old then
  local held = redis.call('ZSCORE', KEYS[2], old)
  if held and tonumber(held) >= tonumber(ARGV[2]) then return 1 end
  redis.call('ZREM', KEYS[2], old)
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[1])
return 1
"""


class RedisLeaderboard:
    """The sorted-set index with the database as fallback and as the truth to rebuild from.

    Keys: `key` (view all), `key:best` (view best), `key:best:holders` (which
    member holds each participant's place in view best), `key:version`.

    Failure policy, per worker:

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
        self._next_check = 0.0  # verify before the first read
        self.stale = True
        self._must_rebuild = False
        self._behind_by_then: tuple[int, int] | None = None
        """The database counts seen when the index was last found behind them."""
        self._verifying = threading.Lock()

    def _mark_stale(self, why: BaseException, rebuild: bool = False) -> None:
        log.warning("leaderboard index unusable, answering from the database: %r", why)
        self.stale = True
        self._must_rebuild = self._must_rebuild or rebuild

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

        try:
            rank = self._run(fill)[-1]
        except redis.RedisError as exc:
            self._mark_stale(exc, rebuild=True)
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
                return Page([_decode(m, s) for m, s in rows], total, version)
            except redis.RedisError as exc:
                self._mark_stale(exc)
            except (ValueError, UnicodeDecodeError) as exc:
                self._mark_stale(exc, rebuild=True)
        return self._db.page(offset, limit, view)

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

    def rank(self, entry: Entry, view: str = "all") -> int:
        self._verify_if_due()
        if not self.stale:
            try:
                rank = self._redis.zrevrank(self.keys[view], _member(entry))
            except redis.RedisError as exc:
                self._mark_stale(exc)
            else:
                if rank is not None:
                    return rank + 1
                # Not indexed (yet): the database knows; the periodic check repairs a real loss.
        return self._db.rank(entry, view)

    def reindex(self, *, submission_id: int | None = None, participant_id: int | None = None) -> None:
        """Rewrite those entries from the database in one MULTI/EXEC: readers see the index
        before or after. (A submission of the same participant indexed in between can
        leave them two entries in view best; the periodic count check rebuilds then.)"""
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
            indexed = tuple(pipe.execute())
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
        temps = tuple(k + suffix for k in finals)
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
            pipe.set(self.version_key, secrets.randbits(48))
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
        log.info("leaderboard index rebuilt from the database: %d entries", count)
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
