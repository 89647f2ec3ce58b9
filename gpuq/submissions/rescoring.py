"""Changing the scoring profile: a new version, every submission rescored in one pass.

`ScoringService.change` is the use case (audit, index rebuild, slot settling
around it); `change_profile` is its database part and runs inside the
caller's transaction:

1. lock the active profile's row and retire it; record the new version as
   active (skipped for a dry run). Submissions are fenced on the active
   version (gpuq.submissions), so none is scored with the old profile after
   this commits;
2. keep every submission's current score (and whether it led) in `score_history`,
   marked with the new version that replaced it;
3. rescore every submission (disqualified ones too): on PostgreSQL one
   set-based UPDATE computing the points with NUMERIC arithmetic, exactly as
   gpuq.scoring does (half-up rounding, one division last, 20 decimal places
   before rounding to 4); on SQLite, whose numbers are binary floats, a
   batched pass through gpuq.scoring itself in the same transaction;
4. recompute each participant's leading submission (their best may change);
5. compare the view `best` before and after.

A dry run does all of it and the caller rolls the transaction back, so what
it reports is exactly what applying would do, and nothing changes. The old
scores stay explainable: each submission recorded the version that scored
it, the retired versions stay stored, and the audit trail keeps the change.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Connection,
    Numeric,
    and_,
    bindparam,
    case,
    cast,
    func,
    insert,
    literal,
    select,
    update,
)

from gpuq import audit, moderation, scoring
from gpuq.clock import Clock
from gpuq.leaderboard import Leaderboard, rule
from gpuq.participants import PARTICIPANTS
from gpuq.scoring import METRICS, PERCENT_METRICS, Profile
from gpuq.slots.service import SlotService
from gpuq.store import tables
from gpuq.store.db import Database, allow_long_wait
from gpuq.store.models import SCORE
from gpuq.submissions import profiles
from gpuq.submissions.profiles import ProfileCache, active

log = logging.getLogger(__name__)

TABLE = tables.SUBMISSIONS
PROFILES = tables.SCORING_PROFILES
BATCH = 5000

HISTORY = tables.SCORE_HISTORY


@dataclasses.dataclass(frozen=True)
class Outcome:
    previous_version: int
    version: int | None
    """The new version; None for a dry run."""
    rescored: int
    scores_changed: int
    leaders: list[dict[str, Any]]
    """The top of view best after the change, each with its score and rank before."""


def change_profile(
    connection: Connection,
    new: Profile,
    moment: dt.datetime,
    dry_run: bool,
    timeout_seconds: float,
    top: int = 20,
) -> Outcome:
    """Make `new` the active profile and rescore everything (see the module docstring).

    Statements may run for `timeout_seconds` (the request path's short
    timeout would stop a large rescore). Submissions wait for the change to
    commit, and get a 503 with Retry-After if that takes longer than their own
    timeout. Does not commit; for a dry run the caller must roll back.
    """
    allow_long_statements(connection, timeout_seconds)
    moderation.lock_admin_changes(connection)
    found = active(connection)
    assert found is not None, "a database with submissions has an active profile"
    previous_version = found[1]
    # A dry run records the version too (inactive): everything is rolled back anyway.
    version = profiles.newest_version(connection) + 1
    if not dry_run:
        connection.execute(update(PROFILES).where(PROFILES.c.active).values(active=False))
    connection.execute(
        insert(PROFILES).values(
            version=version, parameters=profiles.canonical(new), created_at=moment, active=not dry_run
        )
    )
    connection.execute(
        insert(HISTORY).from_select(
            ["submission_id", "replaced_by", "profile_version", "score", "leads"],
            select(TABLE.c.id, literal(version), TABLE.c.profile_version, TABLE.c.score, TABLE.c.leads),
        )
    )
    if connection.dialect.name == "postgresql":
        rescored = _rescore_in_sql(connection, new, version)
    else:
        rescored = _rescore_in_python(connection, new, version)
    moderation.place_leaders(connection)
    before = HISTORY.alias("before")
    changed = connection.scalar(
        select(func.count())
        .select_from(TABLE.join(before, before.c.submission_id == TABLE.c.id))
        .where(before.c.replaced_by == version, before.c.score != TABLE.c.score)
    )
    leaders = _leaders_compared(connection, version, top)
    return Outcome(previous_version, None if dry_run else version, rescored, changed or 0, leaders)


def allow_long_statements(connection: Connection, seconds: float) -> None:
    """Raise PostgreSQL's statement timeout for the rest of this transaction (and the client's
    wait for answers, gpuq.store.db.allow_long_wait)."""
    if connection.dialect.name == "postgresql":
        allow_long_wait(connection, seconds)
        milliseconds = max(1, int(seconds * 1000))
        connection.exec_driver_sql(f"SET LOCAL statement_timeout = {milliseconds}")


def _points_sql(profile: Profile) -> dict[str, Any]:
    """Each metric's points as a SQL expression, computed like gpuq.scoring.score."""

    def const(value: Decimal) -> Any:
        return literal(value, Numeric(40, 20))

    points: dict[str, Any] = {}
    for name in PERCENT_METRICS:
        points[name] = func.round(const(profile.weights[name]) * TABLE.c[name], 4)
    seconds = TABLE.c.completion_time
    best, worst = const(profile.time_best), const(profile.time_worst)
    most = const(profile.max_points("completion_time"))
    between = cast(most * (worst - seconds), Numeric(60, 20)) / (worst - best)
    points["completion_time"] = func.round(
        case((seconds <= best, most), (seconds >= worst, const(Decimal(0))), else_=between), 4
    )
    return points


def _rescore_in_sql(connection: Connection, profile: Profile, version: int | None) -> int:
    points = _points_sql(profile)
    values: dict[str, Any] = {f"points_{name}": points[name] for name in METRICS}
    values["score"] = func.round(sum((points[name] for name in METRICS[1:]), points[METRICS[0]]), 2)
    if version is not None:
        values["profile_version"] = version
    return connection.execute(update(TABLE).values(**values)).rowcount


_RESCORE_ROW = (
    update(TABLE)
    .where(TABLE.c.id == bindparam("row_id"))
    .values(
        score=bindparam("new_score", type_=SCORE),
        **{f"points_{m}": bindparam(f"new_{m}", type_=TABLE.c[f"points_{m}"].type) for m in METRICS},
    )
)


def _rescore_in_python(connection: Connection, profile: Profile, version: int | None) -> int:
    count, last = 0, 0
    columns = [TABLE.c.id, *(TABLE.c[m] for m in METRICS)]
    while rows := connection.execute(
        select(*columns).where(TABLE.c.id > last).order_by(TABLE.c.id).limit(BATCH)
    ).all():
        updates = []
        for row in rows:
            result = scoring.score(dict(zip(METRICS, row[1:], strict=True)), profile)
            updates.append(
                {
                    "row_id": row[0],
                    "new_score": result.total,
                    **{f"new_{m}": result.points[m] for m in METRICS},
                }
            )
        connection.execute(_RESCORE_ROW, updates)
        count += len(rows)
        last = rows[-1][0]
    if version is not None:
        connection.execute(update(TABLE).values(profile_version=version))
    return count


def _leaders_compared(connection: Connection, version: int, top: int) -> list[dict[str, Any]]:
    """The first `top` entries of view best now, with their score and rank in view best before
    (from the score history this change wrote)."""
    before = HISTORY.alias("before")
    rows = connection.execute(
        select(TABLE.c.id, TABLE.c.score, PARTICIPANTS.c.name, before.c.score, before.c.leads)
        .join(before, and_(before.c.submission_id == TABLE.c.id, before.c.replaced_by == version))
        .outerjoin(PARTICIPANTS, PARTICIPANTS.c.id == TABLE.c.participant_id)
        .where(TABLE.c.leads)
        .order_by(*rule.order(TABLE.c.score, TABLE.c.id))
        .limit(top)
    ).all()
    # Their ranks before, in one pass over the entries that led then.
    place = func.rank().over(order_by=rule.order(before.c.score, before.c.submission_id)).label("place")
    ranked = (
        select(before.c.submission_id, place)
        .where(before.c.replaced_by == version, before.c.leads)
        .subquery()
    )
    ids = [row[0] for row in rows]
    earlier = dict(
        connection.execute(
            select(ranked.c.submission_id, ranked.c.place).where(ranked.c.submission_id.in_(ids))
        ).all()
    )
    return [
        {
            "rank": rank,
            "previous_rank": earlier.get(submission_id),
            "submission_id": submission_id,
            "participant": name,
            "score": score,
            "previous_score": old_score,
        }
        for rank, (submission_id, score, name, old_score, _old_leads) in enumerate(rows, start=1)
    ]


class ScoringService:
    """Reading and changing the scoring profile (GET and PUT /admin/scoring)."""

    def __init__(
        self,
        *,
        database: Database,
        profiles: ProfileCache,
        board: Leaderboard,
        slots: SlotService,
        admin_timeout: float,
        clock: Clock,
    ):
        self._database = database
        self._profiles = profiles
        self._board = board
        self._slots = slots
        self._admin_timeout = admin_timeout
        self._clock = clock

    def current(self) -> tuple[Profile, int, dt.datetime]:
        """The active profile, its version and when it became active."""
        self._profiles.get()  # a new database gets its first version here
        with self._database.autocommit() as connection:
            row = connection.execute(
                select(PROFILES.c.version, PROFILES.c.parameters, PROFILES.c.created_at).where(
                    PROFILES.c.active
                )
            ).one()
        return profiles.parse(row.parameters), row.version, row.created_at

    def change(self, new: Profile, *, dry_run: bool, actor: str, reason: str | None) -> Report:
        """Make `new` the active profile and rescore everything, audited; or with `dry_run`
        report exactly what that would do and change nothing. A profile equal to the active
        one changes nothing (`Report.changed` False). Afterwards the index is rebuilt and the
        slot pool settled."""
        self._profiles.get()  # a new database gets its first version here
        self._slots.ensure_seeded()
        moment = self._clock()
        with self._database.connect() as connection:
            current = active(connection)
            if current is not None and current[0] == new:
                return Report(dry_run, False, current[1], None if dry_run else current[1], None, None)
            line_before = self._slots.line(connection)
            outcome = change_profile(connection, new, moment, dry_run, self._admin_timeout)
            report = Report(
                dry_run,
                True,
                outcome.previous_version,
                outcome.version,
                outcome,
                (line_before, self._slots.line(connection)),
            )
            if dry_run:
                connection.rollback()
                return report
            before = {"version": outcome.previous_version, **(current[0].as_dict() if current else {})}
            after = {"version": outcome.version, **new.as_dict()}
            summary = {"rescored": outcome.rescored, "scores_changed": outcome.scores_changed}
            audit.record(
                connection, actor, "scoring.change", "scoring", before, {**after, **summary}, reason, moment
            )
            connection.commit()
        log.info(
            "scoring profile %d replaced by %s by %s: %d submissions rescored, %d scores changed",
            outcome.previous_version,
            outcome.version,
            actor,
            outcome.rescored,
            outcome.scores_changed,
            extra={
                "event": "scoring.change",
                "actor": actor,
                "previous_version": outcome.previous_version,
                "version": outcome.version,
                "rescored": outcome.rescored,
                "scores_changed": outcome.scores_changed,
                "reason": reason,
            },
        )
        self._profiles.forget()
        self._board.refresh()
        self._slots.settle()
        return report


@dataclasses.dataclass(frozen=True)
class Report:
    """What a profile change did (or, for a dry run, would do)."""

    dry_run: bool
    changed: bool
    previous_version: int
    version: int | None
    outcome: Outcome | None
    """None when nothing changed."""
    slot_line: tuple[list[str], list[str]] | None
    """Who was next in line for a slot before and after, by name; None when nothing changed."""
