"""Database models: the source of truth.

Every metric, every point and the score live in exact numeric columns; CHECK
constraints repeat the API's range rules so that nothing out of range or
non-finite (PostgreSQL's NUMERIC accepts 'NaN' and 'Infinity') can be stored
even by a buggy caller.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from gpuq.store.types import ExactDecimal, UTCDateTime

# Deterministic constraint names, so that migrations can refer to them on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

MAX_COMPLETION_SECONDS = Decimal(86400)
"""Completion times above one day are refused as absurd."""

MAX_SUBMISSION_ID = 2**63 - 1
"""The largest id a BIGINT holds: larger ids cannot exist."""

PERCENT = ExactDecimal(7, 4)
SECONDS = ExactDecimal(12, 4)
POINTS = ExactDecimal(7, 4)
SCORE = ExactDecimal(5, 2)

# BIGINT on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY.
ID = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ScoringProfile(Base):
    """One version of the scoring rules. Versions are never edited, only added."""

    __tablename__ = "scoring_profiles"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    parameters: Mapped[str] = mapped_column(Text, nullable=False)
    """The profile as canonical JSON (`Profile.as_dict()`, sorted keys)."""
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
    """The profile new submissions are scored with; exactly one version is active."""


Index(
    "uq_scoring_profiles_active",
    ScoringProfile.active,
    unique=True,
    postgresql_where=ScoringProfile.active,
    sqlite_where=ScoringProfile.active,
)


class Participant(Base):
    """A registered participant (or organiser, with `is_admin`)."""

    __tablename__ = "participants"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(32), nullable=False)
    """As registered (NFKC-normalised); shown on the leaderboard."""
    name_key: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    """The name case-folded: names are unique case-insensitively."""
    is_admin: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
    disqualified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    disqualify_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class ApiKey(Base):
    """A participant's API key, stored only as its SHA-256 (see gpuq.participants)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), nullable=False)
    key_id: Mapped[str] = mapped_column(String(16), nullable=False, unique=True)
    """The public part of the key, used to find the row; shown as the key's prefix."""
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


# At most one live key per participant: rotating revokes the old one in the same transaction.
Index(
    "uq_api_keys_live_participant",
    ApiKey.participant_id,
    unique=True,
    postgresql_where=ApiKey.revoked_at.is_(None),
    sqlite_where=ApiKey.revoked_at.is_(None),
)


class AuditEvent(Base):
    """One admin action: who did what to which target, when, the state before and after."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    actor: Mapped[str] = mapped_column(String(64), nullable=False)
    """The admin's participant name, or "cli:<user>" for the command line."""
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    target: Mapped[str] = mapped_column(String(128), nullable=False)
    before: Mapped[str | None] = mapped_column(Text, nullable=True)
    """JSON, or null when the target did not exist before."""
    after: Mapped[str | None] = mapped_column(Text, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


def _between(column: str, low: str, high: str) -> str:
    return f"{column} >= {low} AND {column} <= {high}"


class Submission(Base):
    """One accepted benchmark result, scored under `profile_version`."""

    __tablename__ = "submissions"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    gpu_utilization: Mapped[Decimal] = mapped_column(PERCENT, nullable=False)
    memory_usage: Mapped[Decimal] = mapped_column(PERCENT, nullable=False)
    power_efficiency: Mapped[Decimal] = mapped_column(PERCENT, nullable=False)
    completion_time: Mapped[Decimal] = mapped_column(SECONDS, nullable=False)
    accuracy: Mapped[Decimal] = mapped_column(PERCENT, nullable=False)
    score: Mapped[Decimal] = mapped_column(SCORE, nullable=False)
    points_gpu_utilization: Mapped[Decimal] = mapped_column(POINTS, nullable=False)
    points_memory_usage: Mapped[Decimal] = mapped_column(POINTS, nullable=False)
    points_power_efficiency: Mapped[Decimal] = mapped_column(POINTS, nullable=False)
    points_completion_time: Mapped[Decimal] = mapped_column(POINTS, nullable=False)
    points_accuracy: Mapped[Decimal] = mapped_column(POINTS, nullable=False)
    profile_version: Mapped[int] = mapped_column(ForeignKey("scoring_profiles.version"), nullable=False)
    client_address: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    participant_id: Mapped[int | None] = mapped_column(ForeignKey("participants.id"), nullable=True)
    """Whose submission it is; null for an anonymous one."""
    disqualified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    disqualify_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    ranked: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=true())
    """On the leaderboard (view=all): neither it nor its participant is disqualified.
    Derived; gpuq.moderation keeps it in step."""
    leads: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=true())
    """On the leaderboard's default view (view=best): ranked, and anonymous or its
    participant's best ranked submission. Derived; kept in step where submissions are
    recorded, moderated and rescored."""
    provenance: Mapped[str] = mapped_column(String(16), nullable=False, server_default="self-reported")
    """"measured": the server derived the metrics from a run's evidence (the evidence
    table); "self-reported": the five numbers were sent as they are."""
    gpu_model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    """The GPU's name, from a measured result's evidence."""
    flags: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Plausibility flags (gpuq.evidence.flags) as a JSON list; null when none was raised."""
    withheld: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """Why the submission is kept off the leaderboard regardless of moderation: "evidence"
    (its evidence failed a check), "review" (a flag the results policy holds: until an
    admin accepts it) or "policy" (a self-reported result where the policy ranks measured
    ones only). Null for every other submission."""

    __table_args__ = (
        CheckConstraint(_between("gpu_utilization", "0", "100"), name="gpu_utilization_range"),
        CheckConstraint(_between("memory_usage", "0", "100"), name="memory_usage_range"),
        CheckConstraint(_between("power_efficiency", "0", "100"), name="power_efficiency_range"),
        CheckConstraint(_between("accuracy", "0", "100"), name="accuracy_range"),
        CheckConstraint(
            f"completion_time > 0 AND completion_time <= {MAX_COMPLETION_SECONDS}",
            name="completion_time_range",
        ),
        CheckConstraint(_between("score", "0", "100"), name="score_range"),
        CheckConstraint("provenance IN ('measured', 'self-reported')", name="provenance"),
        CheckConstraint("withheld IS NULL OR withheld IN ('evidence', 'review', 'policy')", name="withheld"),
        CheckConstraint(
            " AND ".join(
                _between(f"points_{m}", "0", "100")
                for m in (
                    "gpu_utilization",
                    "memory_usage",
                    "power_efficiency",
                    "completion_time",
                    "accuracy",
                )
            ),
            name="points_range",
        ),
    )


# The leaderboard order of gpuq.leaderboard.rule.order (score descending, ties to the
# earlier, smaller id) as indexes, one partial index per view; migrations create them,
# so they are written out here and kept in step with the rule by the ranking test.
Index(
    "ix_submissions_ranked",
    Submission.score.desc(),
    Submission.id,
    postgresql_where=Submission.ranked,
    sqlite_where=Submission.ranked,
)
Index(
    "ix_submissions_leading",
    Submission.score.desc(),
    Submission.id,
    postgresql_where=Submission.leads,
    sqlite_where=Submission.leads,
)
# The results kept off the board (gpuq.submissions.store.withheld_page): few, newest first.
Index(
    "ix_submissions_withheld",
    Submission.withheld,
    Submission.id,
    postgresql_where=Submission.withheld.is_not(None),
    sqlite_where=Submission.withheld.is_not(None),
)
# A GPU model's board (gpuq.leaderboard.gpus), in the rule's order.
Index(
    "ix_submissions_gpu_ranked",
    Submission.gpu_model,
    Submission.score.desc(),
    Submission.id,
    postgresql_where=Submission.ranked,
    sqlite_where=Submission.ranked,
)
# A participant's submissions, best first (their history, their best).
_OWNED = Submission.participant_id.is_not(None)
Index(
    "ix_submissions_participant",
    Submission.participant_id,
    Submission.score.desc(),
    Submission.id,
    postgresql_where=_OWNED,
    sqlite_where=_OWNED,
)
# The submission limits' truth (gpuq.ratelimit): an address's and a participant's recent
# submissions, newest first, read when a limit's log is seeded.
Index("ix_submissions_address_created", Submission.client_address, Submission.created_at)
Index(
    "ix_submissions_participant_created",
    Submission.participant_id,
    Submission.created_at,
    postgresql_where=_OWNED,
    sqlite_where=_OWNED,
)


class ScoreHistory(Base):
    """A submission's score before a profile change replaced it: what it scored under
    `profile_version`, and whether it led its participant's entries then. Written by
    gpuq.submissions.rescoring in the same transaction as the change (`replaced_by`).

    No foreign keys, measured: checking three per row tripled the time of rescoring a
    million submissions; submissions and profile versions are never deleted anyway."""

    __tablename__ = "score_history"

    # The version first: a change appends its rows at the end of the index instead of
    # splitting every page between the rows of earlier changes (measured: 2.5x faster).
    replaced_by: Mapped[int] = mapped_column(Integer, primary_key=True)
    submission_id: Mapped[int] = mapped_column(ID, primary_key=True)
    profile_version: Mapped[int] = mapped_column(Integer, nullable=False)
    score: Mapped[Decimal] = mapped_column(SCORE, nullable=False)
    leads: Mapped[bool] = mapped_column(Boolean, nullable=False)


class IdempotencyKey(Base):
    """A client's Idempotency-Key and what its first request produced.

    `state` is "in_flight" from the claim until the submission commits (in the
    same transaction as the submission), then "done". The response body is
    attached right after; a replay without it is rebuilt from the submission.
    """

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    """Whose key it is: the client address (keys of different clients never meet)."""
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    submission_id: Mapped[int | None] = mapped_column(ForeignKey("submissions.id"), nullable=True)
    response_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)

    __table_args__ = (CheckConstraint("state IN ('in_flight', 'done')", name="state"),)


class SlotPolicy(Base):
    """The slot pool's policy: one row, seeded from the settings, then changed by admins."""

    __tablename__ = "slot_policy"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    lease_seconds: Mapped[int] = mapped_column(Integer, nullable=False)
    cooldown_seconds: Mapped[int] = mapped_column(Integer, nullable=False)
    claim_seconds: Mapped[int] = mapped_column(Integer, nullable=False)
    """0: no claim window (a free slot is granted at once)."""
    qualifying_score: Mapped[Decimal] = mapped_column(SCORE, nullable=False)
    measured_only: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
    """Whether only measured results (gpuq.evidence) put a participant in line for a slot."""
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)

    __table_args__ = (
        CheckConstraint("id = 1", name="one_row"),
        CheckConstraint(
            "lease_seconds > 0 AND cooldown_seconds >= 0 AND claim_seconds >= 0", name="durations"
        ),
    )


class Slot(Base):
    """A named GPU slot of the pool. Removed slots stay (their leases refer to them)."""

    __tablename__ = "slots"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    draining: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
    """No new lease; the current one runs out."""
    removed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    gpu_model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    """None: any result qualifies; a model: only results on that GPU model (gpuq.slots.rules)."""


LEASE_STATES = ("offered", "held", "ended")
END_REASONS = ("expired", "released", "revoked", "declined")


class Lease(Base):
    """One lease of a slot to a participant; its id is the fencing token.

    Offered (claim window) -> held -> ended, or offered -> ended ("declined" when
    the offer lapses). Two live leases on one slot, or two for one participant,
    are impossible: unique partial indexes below.
    """

    __tablename__ = "leases"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    slot_name: Mapped[str] = mapped_column(ForeignKey("slots.name"), nullable=False)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), nullable=False)
    state: Mapped[str] = mapped_column(String(8), nullable=False)
    offered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    granted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    """The offer's deadline while offered; the lease's end while held."""
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)

    __table_args__ = (
        CheckConstraint(f"state IN {LEASE_STATES}", name="state"),
        CheckConstraint(f"end_reason IS NULL OR end_reason IN {END_REASONS}", name="end_reason"),
        CheckConstraint(
            "(state = 'ended') = (ended_at IS NOT NULL) AND (ended_at IS NULL) = (end_reason IS NULL)",
            name="ended",
        ),
        CheckConstraint("state <> 'held' OR granted_at IS NOT NULL", name="granted"),
    )


_LIVE = Lease.ended_at.is_(None)
Index("uq_leases_live_slot", Lease.slot_name, unique=True, postgresql_where=_LIVE, sqlite_where=_LIVE)
Index(
    "uq_leases_live_participant",
    Lease.participant_id,
    unique=True,
    postgresql_where=_LIVE,
    sqlite_where=_LIVE,
)
Index("ix_leases_participant_ended", Lease.participant_id, Lease.ended_at)
Index("ix_leases_live_expires", Lease.expires_at, postgresql_where=_LIVE, sqlite_where=_LIVE)


class RunTicket(Base):
    """A single-use ticket for one measured run (gpuq.submissions.runs)."""

    __tablename__ = "run_tickets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), nullable=False)
    nonce: Mapped[str] = mapped_column(String(64), nullable=False)
    seed: Mapped[int] = mapped_column(BigInteger, nullable=False)
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    submission_id: Mapped[int | None] = mapped_column(ForeignKey("submissions.id"), nullable=True)


class Evidence(Base):
    """The evidence of a measured submission: compressed canonical JSON, its digest (never
    accepted twice) and the results of its checks (a JSON list)."""

    __tablename__ = "evidence"

    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), primary_key=True)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("run_tickets.id"), nullable=False)
    digest: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    checks: Mapped[str] = mapped_column(Text, nullable=False)
    gpu_uuid: Mapped[str] = mapped_column(String(128), nullable=False)
    energy_from: Mapped[Decimal | None] = mapped_column(ExactDecimal(15, 3), nullable=True)
    energy_to: Mapped[Decimal | None] = mapped_column(ExactDecimal(15, 3), nullable=True)
    """The GPU's energy counter (J) at the run's first and last sample, where it was read:
    spans on one GPU never overlap for two real runs (gpuq.evidence.checks, energy_reused)."""
    body: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)

    __table_args__ = (Index("ix_evidence_gpu_energy", "gpu_uuid", "energy_from"),)


class ResultPolicy(Base):
    """What happens to results: one row, seeded from the settings, then changed by admins
    (gpuq.submissions.policy)."""

    __tablename__ = "result_policy"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    self_reported_ranked: Mapped[bool] = mapped_column(Boolean, nullable=False)
    hold_flags: Mapped[str] = mapped_column(Text, nullable=False)
    """A JSON list of the plausibility flags that hold a result for review."""
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)

    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)
