"""Storing a submission (scored, fenced on the profile) and reading submissions back.

The hot path uses SQLAlchemy Core on a Connection: the ORM unit of work and
instrumented objects cost several times more CPU per request (bench/README.md).

The INSERT is fenced on the scoring profile: it stores a row only while the
version the worker scored with is still the active one, and holds a share lock
on that profile row until it commits. An admin changing the profile
(gpuq.submissions.rescoring) first locks the row, so every submission is either stored
before the rescoring pass (and rescored by it) or refused with ProfileChanged
and scored again with the new profile: none keeps a score from a retired profile.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, bindparam, false, func, insert, select, true, update

from gpuq.clock import to_millis
from gpuq.errors import GpuqError, NotFound
from gpuq.leaderboard import Entry, rule
from gpuq.scoring import METRICS, Profile, score
from gpuq.store import tables
from gpuq.store.models import MAX_SUBMISSION_ID

TABLE = tables.SUBMISSIONS
PARTICIPANTS = tables.PARTICIPANTS
PROFILES = tables.SCORING_PROFILES

_DERIVED = ("id", "profile_version", "disqualified_at", "disqualify_reason")
_GIVEN = [c for c in TABLE.c if c.name not in _DERIVED]
_INSERT = (
    insert(TABLE)
    .from_select(
        [c.name for c in _GIVEN] + ["profile_version"],
        select(*(bindparam(c.name, type_=c.type) for c in _GIVEN), PROFILES.c.version)
        .where(PROFILES.c.version == bindparam("profile_version"), PROFILES.c.active)
        .with_for_update(read=True),
    )
    .returning(TABLE.c.id)
)
STATUS_ACTIVE = "active"
STATUS_DISQUALIFIED = "disqualified"


PROVENANCES = ("measured", "self-reported")


@dataclasses.dataclass(frozen=True)
class Provenance:
    """Where a submission's metrics come from, and what was found about them."""

    kind: str = "self-reported"
    """One of PROVENANCES."""
    gpu_model: str | None = None
    flags: tuple[str, ...] = ()
    """Plausibility flags (gpuq.evidence.flags)."""
    withheld: str | None = None
    """"evidence" when its evidence failed a check: stored, never ranked."""


class ProfileChanged(GpuqError):
    """The scoring profile changed since this worker read it: read it again and retry."""


@dataclasses.dataclass(frozen=True)
class StoredSubmission:
    """A stored submission as the API shows it (the client address stays private)."""

    id: int
    metrics: Mapping[str, Decimal]
    points: Mapping[str, Decimal]
    score: Decimal
    profile_version: int
    created_at: dt.datetime
    participant: str | None = None
    """The participant's name; None for an anonymous submission."""
    ranked: bool = True
    leads: bool = True
    disqualified_at: dt.datetime | None = None
    disqualify_reason: str | None = None
    provenance: Provenance = Provenance()

    @property
    def status(self) -> str:
        """ "disqualified" when the submission itself was; otherwise "active"."""
        return STATUS_ACTIVE if self.disqualified_at is None else STATUS_DISQUALIFIED

    @property
    def entry(self) -> Entry:
        """Its place on the leaderboard."""
        return Entry(
            self.id, self.score, self.created_at, self.participant, self.provenance.kind == "measured"
        )

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> StoredSubmission:
        return cls(
            id=row["id"],
            metrics={name: row[name] for name in METRICS},
            points={name: row[f"points_{name}"] for name in METRICS},
            score=row["score"],
            profile_version=row["profile_version"],
            created_at=row["created_at"],
            participant=row.get("participant"),
            ranked=row.get("ranked", True),
            leads=row.get("leads", True),
            disqualified_at=row.get("disqualified_at"),
            disqualify_reason=row.get("disqualify_reason"),
            provenance=Provenance(
                kind=row.get("provenance") or "self-reported",
                gpu_model=row.get("gpu_model"),
                flags=tuple(json.loads(row["flags"])) if row.get("flags") else (),
                withheld=row.get("withheld"),
            ),
        )


def record(
    connection: Connection,
    metrics: Mapping[str, Decimal],
    profile: Profile,
    profile_version: int,
    client_address: str,
    now: dt.datetime,
    participant: tuple[int, str] | None = None,
    provenance: Provenance = Provenance(),
) -> StoredSubmission:
    """Score validated `metrics` and insert the row; returns it with its id.

    `provenance` says where the metrics come from; a withheld one is stored unranked.
    `participant` is (id, name) of the submitter, None when anonymous; a
    participant's submission must run in a transaction (it may take over the
    participant's place on the best-per-participant view, see `take_lead`).
    Raises ProfileChanged when `profile_version` is no longer active. Never
    commits: on an autocommit connection the INSERT is its own transaction,
    durable when this returns; otherwise the caller commits.
    """
    result = score(metrics, profile)
    values = {
        **{name: metrics[name] for name in METRICS},
        **{f"points_{name}": result.points[name] for name in METRICS},
        "score": result.total,
        "profile_version": profile_version,
        "client_address": client_address[:64],
        "created_at": to_millis(now),
        "participant_id": None if participant is None else participant[0],
        "ranked": provenance.withheld is None,
        "leads": participant is None and provenance.withheld is None,
        "provenance": provenance.kind,
        "gpu_model": provenance.gpu_model,
        "flags": json.dumps(list(provenance.flags)) if provenance.flags else None,
        "withheld": provenance.withheld,
    }
    unrankable = provenance.withheld is not None
    if participant is not None:
        unrankable = _lock_in_order(connection, profile_version, participant[0]) or unrankable
    submission_id = connection.execute(_INSERT, values).scalar_one_or_none()
    if submission_id is None:
        raise ProfileChanged(f"scoring profile {profile_version} is no longer active")
    ranked = leads = not unrankable
    if participant is not None:
        ranked, leads = take_lead(connection, participant[0], submission_id, result.total, unrankable)
    name = None if participant is None else participant[1]
    row = {**values, "id": submission_id, "participant": name, "ranked": ranked, "leads": leads}
    return StoredSubmission.from_row(row)


_PROFILE_SHARE = (
    select(PROFILES.c.version)
    .where(PROFILES.c.version == bindparam("version"), PROFILES.c.active)
    .with_for_update(read=True)
)
_PARTICIPANT_LOCK = (
    select(PARTICIPANTS.c.disqualified_at)
    .where(PARTICIPANTS.c.id == bindparam("pid"))
    .with_for_update(key_share=True)
)


def _lock_in_order(connection: Connection, profile_version: int, participant_id: int) -> bool:
    """Take a participant submission's locks before its INSERT, in the order every writer
    uses (the active profile's row, then the participant's row), so that submissions,
    moderation and rescoring never deadlock; returns whether the participant is disqualified.

    The participant's row is locked FOR NO KEY UPDATE: it serialises their submissions
    without blocking the foreign-key checks of other inserts.
    """
    if connection.execute(_PROFILE_SHARE, {"version": profile_version}).first() is None:
        raise ProfileChanged(f"scoring profile {profile_version} is no longer active")
    return connection.execute(_PARTICIPANT_LOCK, {"pid": participant_id}).scalar_one() is not None


_LEADER = select(TABLE.c.id, TABLE.c.score).where(TABLE.c.participant_id == bindparam("pid"), TABLE.c.leads)


def take_lead(
    connection: Connection, participant_id: int, submission_id: int, score: Decimal, unrankable: bool
) -> tuple[bool, bool]:
    """Place a participant's new submission: returns (ranked, leads). An `unrankable` one
    (its participant is disqualified, or it is withheld) is stored unranked.

    It leads when it outranks the participant's current leader (gpuq.leaderboard.rule).
    The caller holds the participant's row lock (`_lock_in_order`), so two submissions
    of one participant, or a submission and a disqualification, decide one after the
    other (SQLite serialises writers anyway); a participant disqualified meanwhile gets
    an unranked row.
    """
    if unrankable:
        connection.execute(update(TABLE).where(TABLE.c.id == submission_id).values(ranked=false()))
        return False, False
    leader = connection.execute(_LEADER, {"pid": participant_id}).first()
    if leader is not None and not rule.outranks(score, submission_id, leader.score, leader.id):
        return True, False
    if leader is not None:
        connection.execute(update(TABLE).where(TABLE.c.id == leader.id).values(leads=false()))
    connection.execute(update(TABLE).where(TABLE.c.id == submission_id).values(leads=true()))
    return True, True


_COLUMNS = [c for c in TABLE.c if c.name not in ("client_address", "participant_id")]
_DETAIL = select(*_COLUMNS, PARTICIPANTS.c.name.label("participant")).outerjoin(
    PARTICIPANTS, PARTICIPANTS.c.id == TABLE.c.participant_id
)


def check_id(submission_id: int) -> int:
    """`submission_id`, unless it is beyond BIGINT (no such submission can exist): NotFound."""
    if submission_id > MAX_SUBMISSION_ID:
        raise NotFound(f"no submission with id {submission_id}")
    return submission_id


def get(connection: Connection, submission_id: int) -> StoredSubmission:
    """The stored submission; raises NotFound."""
    row = connection.execute(_DETAIL.where(TABLE.c.id == submission_id)).mappings().first()
    if row is None:
        raise NotFound(f"no submission with id {submission_id}")
    return StoredSubmission.from_row(row)


@dataclasses.dataclass(frozen=True)
class Summary:
    count: int
    leader: StoredSubmission | None
    """The participant's leading (best ranked) submission."""


def summary(connection: Connection, participant_id: int) -> Summary:
    """How many submissions the participant has, and their leading one."""
    count = connection.scalar(
        select(func.count()).select_from(TABLE).where(TABLE.c.participant_id == participant_id)
    )
    row = (
        connection.execute(_DETAIL.where(TABLE.c.participant_id == participant_id, TABLE.c.leads))
        .mappings()
        .first()
    )
    return Summary(count or 0, None if row is None else StoredSubmission.from_row(row))


HISTORY = tables.SCORE_HISTORY


def earlier_scores(connection: Connection, submission_id: int) -> list[tuple[int, Decimal]]:
    """(profile version, score) of each score the submission had before a profile change, oldest first."""
    # One primary-key probe per profile version (there are few), not a scan of the history.
    versions = select(PROFILES.c.version).scalar_subquery()
    rows = connection.execute(
        select(HISTORY.c.profile_version, HISTORY.c.score)
        .where(HISTORY.c.replaced_by.in_(versions), HISTORY.c.submission_id == submission_id)
        .order_by(HISTORY.c.replaced_by)
    )
    return [(version, earlier) for version, earlier in rows]


WITHHELD = ("evidence", "review", "policy")


def withheld_page(
    connection: Connection, reason: str, offset: int, limit: int
) -> tuple[list[StoredSubmission], int]:
    """The submissions withheld for `reason` (one of WITHHELD), newest first, and how many
    there are (index ix_submissions_withheld)."""
    mine = TABLE.c.withheld == reason
    rows = connection.execute(_DETAIL.where(mine).order_by(TABLE.c.id.desc()).offset(offset).limit(limit))
    total = connection.scalar(select(func.count()).select_from(TABLE).where(mine)) or 0
    return [StoredSubmission.from_row(row) for row in rows.mappings()], total


SAME_GPU_SAMPLE = 1000
"""How many of a GPU model's latest ranked measured results its distribution is taken from."""


def gpu_completion_times(connection: Connection, model: str) -> list[Decimal]:
    """The completion times of the latest ranked measured results on GPU `model` (at most
    SAME_GPU_SAMPLE; index ix_submissions_gpu_ranked)."""
    rows = connection.execute(
        select(TABLE.c.completion_time)
        .where(TABLE.c.ranked, TABLE.c.gpu_model == model, TABLE.c.provenance == "measured")
        .order_by(TABLE.c.id.desc())
        .limit(SAME_GPU_SAMPLE)
    )
    return [time for (time,) in rows]


def accepted_times(
    connection: Connection, scope: str, who: str, since: dt.datetime, limit: int
) -> list[dt.datetime]:
    """When the newest (at most `limit`) submissions after `since` that count against the
    submission limit `scope` of `who` were stored (gpuq.ratelimit.History)."""
    if scope == "participant":
        whose = TABLE.c.participant_id == int(who)
    else:  # an address's anonymous ("submit") or keyed ("keyed") submissions
        keyed = TABLE.c.participant_id.is_not(None) if scope == "keyed" else TABLE.c.participant_id.is_(None)
        whose = (TABLE.c.client_address == who) & keyed
    rows = connection.execute(
        select(TABLE.c.created_at)
        .where(whose, TABLE.c.created_at > since)
        .order_by(TABLE.c.created_at.desc())
        .limit(limit)
    )
    return [at for (at,) in rows]


def of_participant(
    connection: Connection, participant_id: int, offset: int, limit: int
) -> list[StoredSubmission]:
    """A participant's submissions, newest first."""
    rows = connection.execute(
        _DETAIL.where(TABLE.c.participant_id == participant_id)
        .order_by(TABLE.c.id.desc())
        .offset(offset)
        .limit(limit)
    ).mappings()
    return [StoredSubmission.from_row(row) for row in rows]
