"""Submitting: the use case behind POST /submit_qualification, callable without HTTP.

`SubmissionService.submit` takes validated metrics and who sent them, and
does everything in order: the submitter check, the Idempotency-Key claim, the
submission quotas, scoring with the active profile (read again when an admin
changed it meanwhile), the INSERT (committed before anything is answered),
the leaderboard index, the live events, and slot settling. A failure after the
commit (index, events, slots) is logged and repaired later; it never turns a
stored submission into an error.

The answer is rendered here, once: a replay of an idempotent request returns
the first answer's bytes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from gpuq import audit, metrics
from gpuq.clock import Clock, iso_z
from gpuq.config import Settings
from gpuq.errors import Forbidden, NotFound, RateLimited, Unauthorized, Unavailable
from gpuq.evidence.checks import Context, check, failed, refusal
from gpuq.evidence.derive import Derived, MissingMeasurement, derive
from gpuq.evidence.flags import CODES as FLAG_CODES
from gpuq.evidence.flags import flags
from gpuq.evidence.model import Evidence, encode, model_name
from gpuq.leaderboard import Leaderboard
from gpuq.live.board import announce
from gpuq.live.bus import EventBus
from gpuq.participants import Member
from gpuq.ratelimit import RateLimits, Usage
from gpuq.scoring import Profile
from gpuq.serialize import breakdown, number
from gpuq.slots.service import SlotService
from gpuq.store.db import Database
from gpuq.submissions import idempotency, policy, runs, store
from gpuq.submissions.policy import PolicyCache, ResultPolicy
from gpuq.submissions.profiles import ProfileCache
from gpuq.submissions.store import StoredSubmission

log = logging.getLogger(__name__)

PROFILE_ATTEMPTS = 3
"""How often a submission is scored again when the profile changes under it."""


@dataclasses.dataclass(frozen=True)
class Receipt:
    """An accepted submission and the answer that tells the client so."""

    submission_id: int
    body: str
    """The 201 answer, JSON text: success, score, submission_id, rank, participant, breakdown."""
    replayed: bool = False


def receipt_json(
    submission: StoredSubmission,
    profile: Profile | None,
    rank: int | None,
    checks: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The specification's answer to a submission, with its id, participant and breakdown,
    its provenance and flags, and (measured) the metrics derived and the evidence's checks."""
    body = {
        "success": True,
        "score": number(submission.score),
        "submission_id": submission.id,
        "rank": rank,
        "participant": submission.participant,
        "breakdown": breakdown(submission, profile),
        **provenance_json(submission),
    }
    if checks is not None:
        body["metrics"] = {name: number(value) for name, value in submission.metrics.items()}
        body["checks"] = checks
    return body


def provenance_json(submission: StoredSubmission) -> dict[str, Any]:
    """What the answer and GET /submissions/<id> say about where a result comes from."""
    provenance = submission.provenance
    return {
        "provenance": provenance.kind,
        "ranked": submission.ranked,
        "withheld": provenance.withheld,
        "gpu_model": provenance.gpu_model,
        "flags": [{"code": code, "detail": FLAG_CODES[code]} for code in provenance.flags],
    }


@dataclasses.dataclass(frozen=True)
class _Measurement:
    """A measured run on its way into the database: its evidence and the metrics derived."""

    evidence: Evidence
    derived: Derived
    digest: str
    canonical: bytes


def _render(value: dict[str, Any]) -> str:
    # As Flask's JSON responses are written: compact, ASCII, a newline at the end.
    return json.dumps(value, separators=(",", ":")) + "\n"


def scope_of(address: str, member: Member | None) -> str:
    """Whose Idempotency-Keys these are: the participant's, or the address's when anonymous."""
    return address if member is None else f"participant:{member.id}"


@dataclasses.dataclass(frozen=True)
class _Plan:
    """How one submission is to be stored: the results policy read for it, and either its
    measurement or its provenance as a self-reported result."""

    rules: ResultPolicy
    measurement: _Measurement | None
    self_reported: store.Provenance
    """Used when `measurement` is None."""


class SubmissionService:
    """Submissions of one app; every dependency is given, none is looked up."""

    def __init__(
        self,
        *,
        database: Database,
        profiles: ProfileCache,
        board: Leaderboard,
        limits: RateLimits,
        bus: EventBus,
        slots: SlotService,
        settings: Settings,
        clock: Clock,
    ):
        self._database = database
        self._profiles = profiles
        self._board = board
        self._limits = limits
        self._bus = bus
        self._slots = slots
        self._board_size = settings.board_size
        self._allow_anonymous = settings.allow_anonymous
        self._abandoned_after = dt.timedelta(seconds=settings.idempotency_abandon_seconds)
        self._ticket_lifetime = dt.timedelta(minutes=settings.run_ticket_minutes)
        self._policy = PolicyCache(database, settings, clock)
        self._test_backends = settings.allow_test_backends
        self._clock = clock
        self._purge_due: dt.datetime | None = None

    def check_submitter(self, member: Member | None) -> None:
        """Raise Unauthorized when anonymous submissions are off, Forbidden for a disqualified
        participant."""
        if member is None and not self._allow_anonymous:
            raise Unauthorized("anonymous submissions are switched off: send 'Authorization: Bearer <key>'")
        if member is not None and member.disqualified:
            raise Forbidden(f"participant {member.name!r} is disqualified and cannot submit")

    def find_replay(self, scope: str, key: str, digest: str) -> Receipt | None:
        """The first answer to a finished request with this key and body, or None; raises
        idempotency.Mismatch or InFlight (see gpuq.submissions.idempotency)."""
        with self._database.autocommit() as connection:
            replay = idempotency.find_replay(connection, scope, key, digest, self._clock())
        return None if replay is None else self._replayed(replay)

    def issue_ticket(self, member: Member, address: str) -> runs.Issued:
        """A single-use run ticket for `member` (POST /runs); raises Forbidden when disqualified,
        RateLimited when a submission limit is used up (the run's evidence would be refused
        after the run)."""
        self.check_submitter(member)
        self._purge_hourly(self._clock())
        for scope, item, usage in self._limits.usage(address, member.id) if self._limits.enabled else []:
            if scope != "daily" and usage.remaining == 0:
                raise RateLimited(
                    f"submission limit ({item}): no run's evidence would be accepted now", usage, scope
                )
        with self._database.connect() as connection:
            issued = runs.issue(connection, member.id, self._clock(), self._ticket_lifetime)
            connection.commit()
        return issued

    def submit_measured(
        self,
        evidence: Evidence,
        address: str,
        member: Member,
        idempotency_key: tuple[str, str] | None = None,
        on_usage: Callable[[Usage | None], None] = lambda _usage: None,
    ) -> Receipt:
        """Accept a run's evidence: derive the five metrics (gpuq.evidence.derive), check the
        ticket and the evidence, score and store it with the evidence, as `submit` does.

        Raises EvidenceRefused for a refusal of gpuq.evidence.checks (nothing stored), and
        what `submit` raises. Evidence that fails a check is stored unranked.
        """
        self.check_submitter(member)
        # The cheap refusals first (one read), before deriving and encoding a large body.
        with self._database.autocommit() as connection:
            runs.check(connection, evidence.ticket_id, member.id, evidence.nonce, self._clock())
        try:
            derived = derive(evidence)
        except MissingMeasurement as exc:
            raise refusal(exc.code, 422, str(exc)) from None
        canonical, measured = encode(evidence)
        measurement = _Measurement(evidence, derived, measured, canonical)
        try:
            return self.submit(derived.metrics(), address, member, idempotency_key, on_usage, measurement)
        except IntegrityError as exc:
            if runs.is_replay_conflict(exc):  # the same evidence under another ticket, at once
                raise refusal("evidence_replayed", 409) from None
            raise

    def submit(
        self,
        metrics: Mapping[str, Decimal],
        address: str,
        member: Member | None,
        idempotency_key: tuple[str, str] | None = None,
        on_usage: Callable[[Usage | None], None] = lambda _usage: None,
        measurement: _Measurement | None = None,
        declared_gpu: str | None = None,
    ) -> Receipt:
        """Accept validated `metrics` from `address` (and `member`, None when anonymous);
        `declared_gpu` is the GPU model a self-reported result names.

        `idempotency_key` is (key, body fingerprint) when the client sent one. `on_usage`
        hears the tighter submission quota as soon as one is taken, so that the rate-limit
        headers report it even when the submission then fails. Raises
        Unauthorized or Forbidden (`check_submitter`), RateLimited, Unavailable (the profile
        kept changing), idempotency.Mismatch or InFlight, or a database error; in every
        such case nothing is stored and no claim is left behind.
        """
        self.check_submitter(member)  # the handler asks first too; other callers rely on this one
        # Read (on a new database: create) the results policy and the active profile before any
        # transaction takes SQLite's write lock, which a second connection would then wait for.
        rules = self._policy.get()
        self._profiles.get()
        plan = _Plan(rules, measurement, _self_reported(metrics, rules, declared_gpu))
        if idempotency_key is not None:
            return self._submit_once(metrics, address, member, *idempotency_key, on_usage, plan)
        if member is None:
            on_usage(self._limits.take_submitter(address, None))
            # Autocommit: the single INSERT is its own transaction, durable before the 201.
            with self._database.autocommit() as connection:
                submission, profile = self._record(connection, metrics, address, member, plan.self_reported)
            return self._accepted(submission, profile)
        with self._database.connect() as connection:
            submission, profile, checks = self._store(connection, metrics, address, member, on_usage, plan)
            connection.commit()
        return self._accepted(submission, profile, checks)

    def _store(
        self,
        connection: Connection,
        metrics: Mapping[str, Decimal],
        address: str,
        member: Member | None,
        on_usage: Callable[[Usage | None], None],
        plan: _Plan,
    ) -> tuple[StoredSubmission, Profile, list[dict[str, Any]] | None]:
        """In the caller's transaction: the run ticket (measured), the submission quotas, the
        row, and the evidence with its checks (measured); returns the checks' results."""
        member_id = None if member is None else member.id
        measurement, rules = plan.measurement, plan.rules
        if measurement is None:
            on_usage(self._limits.take_submitter(address, member_id, connection))
            submission, profile = self._record(connection, metrics, address, member, plan.self_reported)
            return submission, profile, None
        assert member is not None, "a measured result needs a participant: their ticket"
        evidence, now = measurement.evidence, self._clock()
        issued_at, expires_at = runs.take(connection, evidence.ticket_id, member.id, evidence.nonce, now)
        runs.refuse_replay(connection, measurement.digest)
        on_usage(self._limits.take_submitter(address, member_id, connection))
        context = Context(
            issued_at, expires_at, self._test_backends, runs.energy_reused(connection, evidence)
        )
        results = check(evidence, context, now)
        raised = tuple(flags(metrics, True, store.gpu_completion_times(connection, evidence.gpu.name)))
        provenance = store.Provenance(
            kind="measured",
            gpu_model=evidence.gpu.name,
            flags=raised,
            withheld=rules.withheld("measured", raised, evidence_failed=bool(failed(results))),
        )
        submission, profile = self._record(connection, metrics, address, member, provenance)
        runs.use(
            connection,
            evidence,
            submission.id,
            measurement.digest,
            measurement.canonical,
            results,
        )
        return submission, profile, [result.to_json() for result in results]

    def result_policy(self) -> ResultPolicy:
        return self._policy.get()

    def set_result_policy(
        self, actor: str, self_reported_ranked: bool | None, hold_flags: Sequence[str] | None
    ) -> ResultPolicy:
        """Change the results policy (for results submitted from now on), audited; raises InvalidInput."""
        before = self._policy.get()
        new = before.updated(self_reported_ranked, hold_flags)
        moment = self._clock()
        with self._database.connect() as connection:
            policy.write(connection, new, moment)
            audit.record(
                connection, actor, "results.policy", "results", before.to_json(), new.to_json(), None, moment
            )
            connection.commit()
        self._policy.forget()
        return new

    def _record(
        self,
        connection: Connection,
        metrics: Mapping[str, Decimal],
        address: str,
        member: Member | None,
        provenance: store.Provenance,
    ) -> tuple[StoredSubmission, Profile]:
        """Score and insert with the active profile, reading it again if an admin just changed it."""
        who = None if member is None else (member.id, member.name)
        for _attempt in range(PROFILE_ATTEMPTS):
            profile, version = self._profiles.get()
            try:
                return store.record(
                    connection, metrics, profile, version, address, self._clock(), who, provenance
                ), profile
            except store.ProfileChanged:
                self._profiles.forget()
        raise Unavailable("the scoring profile is being changed; retry", retry_after=1)

    def _submit_once(
        self,
        metrics: Mapping[str, Decimal],
        address: str,
        member: Member | None,
        key: str,
        digest: str,
        on_usage: Callable[[Usage | None], None],
        plan: _Plan,
    ) -> Receipt:
        scope = scope_of(address, member)
        moment = self._clock()
        self._purge_hourly(moment)
        with self._database.connect() as connection:
            # The claim lives and dies with this transaction (gpuq.submissions.idempotency).
            replay = idempotency.claim(connection, scope, key, digest, moment, self._abandoned_after)
            if replay is None:
                submission, profile, checks = self._store(
                    connection, metrics, address, member, on_usage, plan
                )
                idempotency.complete(connection, scope, key, submission.id)
                connection.commit()
        if replay is not None:  # finished meanwhile; answered after this connection is back in the pool
            return self._replayed(replay)
        receipt = self._accepted(submission, profile, checks)
        try:
            with self._database.autocommit() as connection:
                idempotency.attach_response(connection, scope, key, receipt.body)
        except Exception:  # a replay then rebuilds the body from the stored submission
            log.exception("could not keep the response of an idempotent submission")
        return receipt

    def _purge_hourly(self, moment: dt.datetime) -> None:
        """Expired Idempotency-Keys are ignored by `claim`, expired tickets by `runs.check`;
        this keeps both tables from growing (once an hour per service)."""
        if self._purge_due is None or moment >= self._purge_due:
            self._purge_due = moment + dt.timedelta(hours=1)
            with self._database.autocommit() as connection:
                idempotency.purge_expired(connection, moment)
                runs.purge_unused(connection, moment)

    def _replayed(self, replay: idempotency.Replay) -> Receipt:
        metrics.submission_replayed()
        if replay.response_body is not None:
            return Receipt(replay.submission_id, replay.response_body, replayed=True)
        with self._database.autocommit() as connection:
            submission = store.get(connection, replay.submission_id)
            checks = runs.checks_of(connection, submission.id)
        rank = self._index(submission)  # the first answer was lost: its indexing may have been too
        body = _render(receipt_json(submission, self._explaining(submission), rank, checks))
        return Receipt(submission.id, body, replayed=True)

    def _explaining(self, submission: StoredSubmission) -> Profile | None:
        """The profile that explains the submission's points: the active one when it scored
        it, else None (a retired profile's weights are not shown)."""
        profile, version = self._profiles.get()
        return profile if submission.profile_version == version else None

    def _accepted(
        self, submission: StoredSubmission, profile: Profile, checks: list[dict[str, Any]] | None = None
    ) -> Receipt:
        """Index, announce and settle after the commit; none of it may fail the submission."""
        metrics.submission_accepted()
        rank = self._index(submission)
        log.info(
            "submission %d accepted: score %s, rank %s",
            submission.id,
            submission.score,
            rank,
            extra={
                "event": "submission.accepted",
                "submission_id": submission.id,
                "score": number(submission.score),
                "rank": rank,
                "participant": submission.participant,
                "profile_version": submission.profile_version,
                "provenance": submission.provenance.kind,
                "flags": list(submission.provenance.flags),
            },
        )
        announce(self._bus, self._board, submission.entry, rank, self._board_size, submission.leads)
        # A new best (or, for a slot line of measured results, a ranked measured one) may make
        # the participant eligible for a free slot.
        measured = submission.provenance.kind == "measured" and submission.ranked
        if submission.participant is not None and (submission.leads or measured):
            self._slots.settle(expire=False)
        return Receipt(submission.id, _render(receipt_json(submission, profile, rank, checks)))

    def _index(self, submission: StoredSubmission) -> int | None:
        """Put a stored, ranked submission on the index (idempotent); its rank in view all."""
        if not submission.ranked:
            return None
        return self._board.add(submission.entry) or self._rank_or_none(submission)

    def _rank_or_none(self, submission: StoredSubmission) -> int | None:
        if not submission.ranked:
            return None
        # The submission is committed: a failing rank look-up must not turn the 201 into an error.
        try:
            return self._board.rank(submission.entry)
        except Exception:
            log.exception("rank look-up failed after commit")
            return None

    def withheld(self, reason: str, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """The results kept off the board for `reason` ("evidence", "review", "policy"), newest
        first, as admins review them; and how many there are."""
        with self._database.autocommit() as connection:
            found, total = store.withheld_page(connection, reason, offset, limit)
        return [
            {
                "submission_id": submission.id,
                "participant": submission.participant,
                "score": number(submission.score),
                "submitted_at": iso_z(submission.created_at),
                "status": submission.status,
                **provenance_json(submission),
            }
            for submission in found
        ], total

    def evidence(self, submission_id: int) -> dict[str, Any]:
        """A measured submission's evidence as it was stored, with its checks; raises NotFound."""
        store.check_id(submission_id)
        with self._database.autocommit() as connection:
            evidence = runs.evidence_of(connection, submission_id)
            checks = runs.checks_of(connection, submission_id)
        if evidence is None or checks is None:
            raise NotFound(f"submission {submission_id} has no evidence (it is self-reported, or unknown)")
        return {"submission_id": submission_id, "checks": checks, "evidence": evidence}

    def detail(self, submission_id: int) -> dict[str, Any]:
        """A stored submission as GET /submissions/<id> shows it; raises NotFound."""
        store.check_id(submission_id)
        with self._database.autocommit() as connection:
            submission = store.get(connection, submission_id)
            earlier = store.earlier_scores(connection, submission_id)
            checks = runs.checks_of(connection, submission_id)
        return {
            "submission_id": submission.id,
            "score": number(submission.score),
            "rank": self._board.rank(submission.entry) if submission.ranked else None,
            "participant": submission.participant,
            "status": submission.status,
            "profile_version": submission.profile_version,
            "submitted_at": iso_z(submission.created_at),
            "breakdown": breakdown(submission, self._explaining(submission)),
            "earlier_scores": [{"profile_version": v, "score": number(score)} for v, score in earlier],
            **provenance_json(submission),
            "checks": checks,
        }


def _self_reported(
    metrics: Mapping[str, Decimal], rules: ResultPolicy, declared_gpu: str | None
) -> store.Provenance:
    """A self-reported result's provenance: the GPU model it declares, its flags, and what the
    results policy makes of it."""
    raised = tuple(flags(metrics))
    return store.Provenance(
        gpu_model=None if declared_gpu is None else model_name(declared_gpu),
        flags=raised,
        withheld=rules.withheld("self-reported", raised),
    )
