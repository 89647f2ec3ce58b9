"""Request models (Pydantic v2, strict) and the translation of their errors.

Numbers arrive as Decimal (see body.py); strict mode refuses booleans,
strings and null for a number, and `extra="forbid"` refuses fields a client
may not set (`score`, `id`, `created_at`, ...). Metrics are kept to 4 decimal
places, rounded half-up, before scoring and storage: the stored value is the
scored value.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from gpuq.api.body import json_type
from gpuq.errors import FieldError, InvalidInput
from gpuq.evidence.model import Evidence, Gpu, Run, Samples, model_name
from gpuq.store.models import MAX_COMPLETION_SECONDS

METRIC_QUANTUM = Decimal("0.0001")


def _whole(value: Decimal) -> int:
    """JSON numbers arrive as Decimal (body.py); a count must be a whole one."""
    if value != value.to_integral_value():
        raise ValueError("must be a whole number")
    return int(value)


def _four_places(value: Decimal) -> Decimal:
    return value.quantize(METRIC_QUANTUM, rounding=ROUND_HALF_UP)


def json_number(
    low: Decimal | int,
    high: Decimal | int,
    description: str = "",
    *,
    places: bool = False,
    whole: bool = False,
) -> Any:
    """A JSON number from `low` to `high`, validated as an exact Decimal.

    `places` keeps 4 decimal places (half-up), `whole` asks for a whole number (an
    int then). The published schema says "number" (or "integer") with the bounds:
    the API takes JSON numbers only (strict mode refuses strings), not pydantic's
    default number-or-string.
    """
    schema: dict[str, Any] = {
        "type": "integer" if whole else "number",
        "minimum": int(low) if low == int(low) else float(low),
        "maximum": int(high) if high == int(high) else float(high),
    }
    if description:
        schema["description"] = description
    extra = [AfterValidator(_four_places)] if places else [AfterValidator(_whole)] if whole else []
    return Annotated[Decimal, Field(ge=low, le=high, allow_inf_nan=False), *extra, WithJsonSchema(schema)]


if TYPE_CHECKING:  # a Decimal to the type checker; bounds and schema for pydantic
    Percent = Decimal
else:
    Percent = json_number(0, 100, "A percentage, 0 to 100.", places=True)
if TYPE_CHECKING:  # a Decimal to the type checker; bounds and schema for pydantic
    Seconds = Decimal
else:
    Seconds = json_number(
        METRIC_QUANTUM,
        MAX_COMPLETION_SECONDS,
        "Seconds the benchmark took, at least 0.0001 and at most 86400.",
        places=True,
    )


GpuModelName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"\S")]
"""A GPU model's name as NVML gives it (GET /gpus lists those with results)."""


class SubmissionIn(BaseModel):
    """The body of POST /submit_qualification."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    gpu_utilization: Percent
    memory_usage: Percent
    power_efficiency: Percent
    completion_time: Seconds
    accuracy: Percent
    gpu_model: GpuModelName | None = Field(
        None,
        description="Optional: the GPU model the numbers were measured on, as declared (a measured "
        "result's model comes from its evidence instead).",
    )


MAX_SAMPLES = 36_000
"""Samples in one run's evidence: an hour at 10 per second."""

if TYPE_CHECKING:
    Watts = Decimal
    Joules = Decimal
    SampleTime = Decimal
    Bytes = int
    Count = int
    Rate = Decimal
    Status = int
else:
    Watts = json_number(0, 100_000, "Watts.")
    Joules = json_number(0, Decimal("999999999999.999"), "Joules (the GPU's total-energy counter).")
    SampleTime = json_number(-1, MAX_COMPLETION_SECONDS + 3600, "Seconds since the run started.")
    Bytes = json_number(0, 2**62, "Bytes.", whole=True)
    Count = json_number(0, 2**62, whole=True)
    Rate = json_number(1, 100, "Samples per second.")
    Status = json_number(-(2**31), 2**31 - 1, "The command's exit status.", whole=True)
Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"\S")]
Short = Annotated[str, Field(max_length=96)]
SAMPLE_FIELDS = (
    "gpu_util",
    "mem_used_bytes",
    "power_w",
    "energy_j",
    "sm_clock_mhz",
    "mem_clock_mhz",
    "throttle_reasons",
    "uuid",
)


class GpuIn(BaseModel):
    """The GPU as NVML names it; null where NVML does not support a field."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    name: Name
    uuid: Name
    driver: Short | None = None
    power_limit_w: Watts | None = None
    memory_total_bytes: Bytes | None = None


class SamplesIn(BaseModel):
    """Columns of equal length, one entry per sample; null where unsupported."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    t: list[SampleTime] = Field(min_length=2, max_length=MAX_SAMPLES)
    gpu_util: list[Percent | None] = Field(max_length=MAX_SAMPLES)
    mem_used_bytes: list[Bytes | None] = Field(max_length=MAX_SAMPLES)
    power_w: list[Watts | None] = Field(max_length=MAX_SAMPLES)
    energy_j: list[Joules | None] = Field(max_length=MAX_SAMPLES)
    sm_clock_mhz: list[Count | None] = Field(max_length=MAX_SAMPLES)
    mem_clock_mhz: list[Count | None] = Field(max_length=MAX_SAMPLES)
    throttle_reasons: list[Count | None] = Field(max_length=MAX_SAMPLES)
    uuid: list[Short | None] = Field(max_length=MAX_SAMPLES)

    @model_validator(mode="after")
    def _same_length(self) -> SamplesIn:
        count = len(self.t)
        for name in SAMPLE_FIELDS:
            if len(getattr(self, name)) != count:
                raise ValueError(f"samples.{name} has {len(getattr(self, name))} entries, samples.t {count}")
        return self


def _utc(moment: dt.datetime) -> dt.datetime:
    """An aware time as UTC, within the years 2000-2999 (beyond them, converting can overflow)."""
    try:
        utc = moment.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("must be a time in the years 2000-2999") from None
    if not 2000 <= utc.year <= 2999:
        raise ValueError("must be a time in the years 2000-2999")
    return utc


if TYPE_CHECKING:
    Moment = dt.datetime
    SinceTicket = Decimal
else:
    Moment = Annotated[AwareDatetime, Field(strict=False), AfterValidator(_utc)]
    SinceTicket = json_number(-86400, 86400, "Seconds from receiving the ticket to the run's start.")


class RunIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    started_at: Moment = Field(description="When the command started (ISO 8601 with an offset).")
    ended_at: Moment = Field(description="When it ended.")
    wall_seconds: Seconds
    since_ticket_seconds: SinceTicket
    exit_status: Status
    accuracy: Percent | None = Field(description="What the benchmark reported; null if nothing.")


class EvidenceIn(BaseModel):
    """The body of POST /runs/<ticket_id>/evidence (what gpuq-agent records)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    nonce: Annotated[str, Field(min_length=1, max_length=64)]
    agent: Annotated[str, Field(max_length=64)] = ""
    backend: Literal["nvml", "fake", "replay"] = Field(
        description="Where the samples came from: a GPU through NVML, or the agent's test backends."
    )
    gpu: GpuIn
    rate_hz: Rate
    samples: SamplesIn
    unsupported: list[Literal[SAMPLE_FIELDS]] = Field(default_factory=list, max_length=len(SAMPLE_FIELDS))  # type: ignore[valid-type]
    run: RunIn

    def to_evidence(self, ticket_id: str) -> Evidence:
        samples = self.samples
        return Evidence(
            ticket_id=ticket_id,
            nonce=self.nonce,
            rate_hz=self.rate_hz,
            gpu=Gpu(
                name=model_name(self.gpu.name),
                uuid=self.gpu.uuid,
                driver=self.gpu.driver,
                power_limit_w=self.gpu.power_limit_w,
                memory_total_bytes=self.gpu.memory_total_bytes,
            ),
            samples=Samples(
                t=samples.t,
                gpu_util=samples.gpu_util,
                mem_used_bytes=samples.mem_used_bytes,
                power_w=samples.power_w,
                energy_j=samples.energy_j,
                sm_clock_mhz=samples.sm_clock_mhz,
                mem_clock_mhz=samples.mem_clock_mhz,
                throttle_reasons=samples.throttle_reasons,
                uuid=samples.uuid,
            ),
            run=Run(
                started_at=self.run.started_at,
                ended_at=self.run.ended_at,
                wall_seconds=self.run.wall_seconds,
                since_ticket_seconds=self.run.since_ticket_seconds,
                exit_status=self.run.exit_status,
                accuracy=self.run.accuracy,
            ),
            unsupported=frozenset(self.unsupported),
            agent=self.agent,
            backend=self.backend,
        )


# Response models: documentation of what the handlers send (the OpenAPI spec is
# generated from them, and the schemathesis test checks every response against it).


class MetricPoints(BaseModel):
    value: float = Field(description="The value as stored (4 decimal places).")
    points: float = Field(description="Points earned, out of the weight.")
    weight: float | None = Field(
        None, description="Points this metric is worth out of 100 (absent for an older profile)."
    )


class Breakdown(BaseModel):
    gpu_utilization: MetricPoints
    memory_usage: MetricPoints
    power_efficiency: MetricPoints
    completion_time: MetricPoints
    accuracy: MetricPoints


ParticipantName = Field(description="The participant's name; null for an anonymous submission.")


class Flag(BaseModel):
    code: str = Field(description="A plausibility flag's stable code (README: Measured results).")
    detail: str


class Check(BaseModel):
    code: str = Field(description="An evidence rule's stable code (README: Measured results).")
    passed: bool
    detail: str


class Provenanced(BaseModel):
    """Where a result comes from and what was found about it."""

    provenance: Literal["measured", "self-reported"]
    ranked: bool = Field(description="On the leaderboard (view all).")
    withheld: Literal["evidence", "review", "policy"] | None = Field(
        description="Why it is kept off the leaderboard: its evidence failed a check, a flag holds it "
        "for review, or the policy ranks measured results only; null when none of these."
    )
    gpu_model: str | None = Field(description="The GPU, from a measured result's evidence.")
    flags: list[Flag] = Field(description="Plausibility flags; they never refuse a result on their own.")


class SubmissionCreated(Provenanced):
    success: Literal[True]
    score: float = Field(ge=0, le=100)
    submission_id: int
    rank: int | None = Field(
        description="Rank among all ranked submissions (view all; 1 is best); null if it could not be "
        "read, or the result is not ranked."
    )
    participant: str | None = ParticipantName
    breakdown: Breakdown
    metrics: dict[str, float] | None = Field(
        None, description="A measured result: the five metrics the server derived from the evidence."
    )
    checks: list[Check] | None = Field(None, description="A measured result: every evidence check.")


class TicketIssued(BaseModel):
    ticket_id: str
    nonce: str = Field(description="The evidence must carry it back.")
    seed: int = Field(description="Hand it to the benchmark (gpuq-agent sets GPUQ_RUN_SEED).")
    issued_at: str = Field(json_schema_extra={"format": "date-time"})
    expires_at: str = Field(json_schema_extra={"format": "date-time"})
    evidence_url: str = Field(description="Where to POST the run's evidence.")


class EarlierScore(BaseModel):
    profile_version: int
    score: float = Field(ge=0, le=100)


class SubmissionOut(Provenanced):
    submission_id: int
    score: float = Field(ge=0, le=100)
    rank: int | None = Field(description="Rank in view all; null when disqualified.")
    participant: str | None = ParticipantName
    status: Literal["active", "disqualified"]
    profile_version: int
    submitted_at: str = Field(json_schema_extra={"format": "date-time"})
    breakdown: Breakdown
    earlier_scores: list[EarlierScore] = Field(
        description="Its scores under earlier profiles, oldest first (kept when a profile change rescores)."
    )
    checks: list[Check] | None = Field(
        description="A measured result's evidence checks; null when self-reported."
    )


class LeaderboardEntry(BaseModel):
    rank: int
    submission_id: int
    participant: str | None = ParticipantName
    score: float = Field(ge=0, le=100)
    submitted_at: str = Field(json_schema_extra={"format": "date-time"})
    provenance: Literal["measured", "self-reported"] = Field(
        description="measured: the server derived the metrics from a run's evidence (gpuq-agent)."
    )


class LeaderboardPage(BaseModel):
    leaderboard: list[LeaderboardEntry]
    view: Literal["best", "all"]
    gpu: str | None = Field(None, description="The GPU model of this board (with ?gpu=).")
    total: int
    limit: int
    offset: int


class GpuModel(BaseModel):
    model: str
    results: int = Field(
        description="Ranked results on this model (measured, or self-reported declaring it)."
    )
    measured: int = Field(description="How many of them are measured.")
    participants: int = Field(description="Participants among them (anonymous results not counted).")


class GpuModels(BaseModel):
    gpus: list[GpuModel]


# Participants and keys.


class ParticipantIn(BaseModel):
    """The body of POST /participants."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    # The published schema states the rule for the normalised name; the service
    # normalises (NFKC) before checking it, so full-width letters are accepted too.
    name: Annotated[
        str,
        Field(max_length=256),
        WithJsonSchema(
            {
                "type": "string",
                "pattern": "^[A-Za-z0-9_-]{3,32}$",
                "description": "3-32 letters (A-Z, a-z), digits, '-' or '_' after Unicode NFKC "
                "normalisation; unique ignoring letter case.",
            }
        ),
    ]


class AdminParticipantIn(ParticipantIn):
    """The body of POST /admin/participants."""

    admin: bool = Field(False, description="Make the participant an admin.")


class ReasonIn(BaseModel):
    """The body of a moderation request."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    reason: str = Field(min_length=1, max_length=1000, description="Why; kept in the audit trail.")


class KeyIssued(BaseModel):
    name: str
    is_admin: bool
    api_key: str = Field(
        description="The key, shown this once only: send it as 'Authorization: Bearer <key>'."
    )
    key_prefix: str = Field(description="How the key is shown from now on.")
    created_at: str = Field(json_schema_extra={"format": "date-time"})


class HistoryItem(BaseModel):
    submission_id: int
    score: float = Field(ge=0, le=100)
    status: Literal["active", "disqualified"]
    best: bool = Field(description="This is the participant's entry on the leaderboard (view best).")
    profile_version: int
    submitted_at: str = Field(json_schema_extra={"format": "date-time"})


class ParticipantOut(BaseModel):
    name: str
    registered_at: str = Field(json_schema_extra={"format": "date-time"})
    disqualified: bool
    best_score: float | None = Field(description="Best ranked score; null without one.")
    rank: int | None = Field(description="Rank on the leaderboard (view best); null without a ranked entry.")
    submission_count: int
    key_prefix: str | None = Field(None, description="The live key's prefix (only for the participant).")
    history: list[HistoryItem] = Field(description="Submissions, newest first (paginated).")
    limit: int
    offset: int


class KeyRevoked(BaseModel):
    name: str
    revoked: int = Field(description="How many live keys were revoked (0 or 1).")


# Admin.


if TYPE_CHECKING:  # a Decimal to the type checker; bounds and schema for pydantic
    Weight = Decimal
else:
    Weight = json_number(0, 1, "A fraction, 0 to 1.")
if TYPE_CHECKING:  # a Decimal to the type checker; bounds and schema for pydantic
    TimeBound = Decimal
else:
    TimeBound = json_number(0, MAX_COMPLETION_SECONDS)


class WeightsIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    gpu_utilization: Weight
    memory_usage: Weight
    power_efficiency: Weight
    completion_time: Weight
    accuracy: Weight


class ProfileIn(BaseModel):
    """The body of PUT /admin/scoring."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    weights: WeightsIn = Field(description="Fractions of the score, at most 4 decimal places, summing to 1.")
    time_best: TimeBound = Field(description="Completion time (s) worth all of its weight.")
    time_worst: TimeBound = Field(
        description="Completion time (s) worth none of its weight; more than time_best."
    )
    reason: str | None = Field(None, max_length=1000)


class SlotIn(BaseModel):
    """The body of POST /admin/slots."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    name: Annotated[
        str,
        Field(max_length=64),
        WithJsonSchema({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"}),
    ]
    gpu_model: GpuModelName | None = Field(
        None, description="Tie the slot to a GPU model: it goes to the best result on that model."
    )


class SlotModelIn(BaseModel):
    """The body of PUT /admin/slots/{name}/gpu-model."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    gpu_model: GpuModelName | None = Field(description="The GPU model the slot is tied to; null: any result.")


if TYPE_CHECKING:  # an int to the type checker; bounds and schema for pydantic
    PoolSize = int
else:
    PoolSize = json_number(
        0, 64, "Slots gpu-0 .. gpu-(size-1); others are removed, or drained while leased.", whole=True
    )


class PoolSizeIn(BaseModel):
    """The body of PUT /admin/slots/size."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    size: PoolSize


if TYPE_CHECKING:  # a Decimal to the type checker; bounds and schema for pydantic
    Hours = Decimal
else:
    Hours = json_number(0, 8760)
if TYPE_CHECKING:  # a Decimal to the type checker; bounds and schema for pydantic
    Minutes = Decimal
else:
    Minutes = json_number(0, 10080)
if TYPE_CHECKING:  # a Decimal to the type checker; bounds and schema for pydantic
    Score = Decimal
else:
    Score = json_number(0, 100)


class SlotPolicyIn(BaseModel):
    """The body of PUT /admin/slots/policy: what is left out stays as it is."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    lease_hours: Hours | None = None
    cooldown_hours: Hours | None = None
    claim_minutes: Minutes | None = None
    qualifying_score: Score | None = None
    measured_only: bool | None = Field(
        None, description="Only measured results (gpuq-agent's evidence) put a participant in line."
    )


DateTime = Field(json_schema_extra={"format": "date-time"})


class SlotOut(BaseModel):
    name: str
    gpu_model: str | None = Field(description="Tied to this GPU model's results; null: any result.")
    state: Literal["free", "offered", "held", "draining"]
    lease_state: Literal["offered", "held"] | None = Field(description="The live lease's state, if any.")
    holder: str | None
    lease_id: int | None = Field(description="The live lease's id (its fencing token).")
    granted_at: str | None = DateTime
    expires_at: str | None = Field(
        json_schema_extra={"format": "date-time"},
        description="When the offer lapses (offered) or the lease ends (held).",
    )
    seconds_left: int | None


class InLine(BaseModel):
    position: int
    participant: str
    score: float


class ModelPlace(BaseModel):
    gpu_model: str
    position: int


class ModelLine(BaseModel):
    gpu_model: str
    in_line: list[InLine] = Field(description="The next eligible participants for this model's slots.")


class SlotStanding(BaseModel):
    participant: str
    eligible: bool
    position: int | None = Field(description="Place in line when eligible.")
    reason: str
    cooling_down_until: str | None = Field(None, json_schema_extra={"format": "date-time"})
    gpu_models: list[ModelPlace] = Field(
        description="When eligible: the place in the line of each GPU model's slots the caller's "
        "results qualify for."
    )


FlagCode = Literal[
    "all_maximum", "time_below_minimum", "looks_like_fractions", "looks_like_milliseconds", "outlier_for_gpu"
]
"""The codes of gpuq.evidence.flags.CODES, for the published schema (a test keeps them equal)."""


class ResultPolicyIn(BaseModel):
    """The body of PUT /admin/results/policy: what is left out stays as it is."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    self_reported_ranked: bool | None = Field(None, description="Whether self-reported results are ranked.")
    hold_flags: list[FlagCode] | None = Field(
        None, max_length=16, description="Plausibility flags that hold a result for review."
    )


class ResultPolicyOut(BaseModel):
    self_reported_ranked: bool
    hold_flags: list[FlagCode]


class SlotPolicyOut(BaseModel):
    lease_hours: float
    cooldown_hours: float
    claim_minutes: float = Field(description="0: no claim window.")
    qualifying_score: float
    measured_only: bool = Field(description="Only measured results put a participant in line.")


class SlotsOut(BaseModel):
    slots: list[SlotOut]
    in_line: list[InLine] = Field(description="The next eligible participants, in order.")
    model_lines: list[ModelLine] = Field(
        description="For each GPU model that slots are tied to: the next in that line."
    )
    policy: SlotPolicyOut
    now: str = DateTime
    me: SlotStanding | None = Field(None, description="With an API key: where the caller stands.")


class LeaseOut(BaseModel):
    lease_id: int
    slot: str
    participant: str
    state: Literal["offered", "held", "ended"]
    offered_at: str = DateTime
    granted_at: str | None = DateTime
    expires_at: str = DateTime
    ended_at: str | None = DateTime
    end_reason: Literal["expired", "released", "revoked", "declined"] | None


class SlotHistory(BaseModel):
    leases: list[LeaseOut]
    total: int
    limit: int
    offset: int


class SlotAction(BaseModel):
    action: Literal["accept", "decline", "release"]
    slot: str
    participant: str
    lease_id: int
    expires_at: str | None = DateTime


class PoolChanged(BaseModel):
    action: str
    target: str
    slots: list[SlotOut]


class ProfileOut(BaseModel):
    version: int
    weights: dict[str, float]
    time_best: float
    time_worst: float
    activated_at: str = Field(json_schema_extra={"format": "date-time"})


class LeaderChange(BaseModel):
    rank: int
    previous_rank: int | None = Field(description="Rank in view best before; null if not on it then.")
    submission_id: int
    participant: str | None
    score: float
    previous_score: float


class SlotLine(BaseModel):
    before: list[str]
    after: list[str]


class ProfileChange(BaseModel):
    dry_run: bool
    changed: bool = Field(description="False when the profile equals the active one (nothing done).")
    previous_version: int
    version: int | None = Field(description="The new active version; null for a dry run.")
    rescored: int
    scores_changed: int
    leaders: list[LeaderChange] = Field(description="The top of view best after the change.")
    slot_line: SlotLine | None = Field(
        description="The next in line for a GPU slot before and after (holders keep their leases)."
    )


class Moderated(BaseModel):
    target: str
    action: str
    before: dict[str, Any]
    after: dict[str, Any]


class AuditEventOut(BaseModel):
    id: int
    at: str = Field(json_schema_extra={"format": "date-time"})
    actor: str
    action: str
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    reason: str | None


class AuditPage(BaseModel):
    events: list[AuditEventOut]
    total: int
    limit: int
    offset: int


class DependencyCheck(BaseModel):
    status: Literal["up", "down", "read_only", "not_configured"]
    latency_ms: float | None = None
    error: str | None = None


class Health(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    timestamp: str = Field(json_schema_extra={"format": "date-time"})
    version: str = Field(description="The package version.")
    commit: str | None = Field(description="The source commit, when known (GPUQ_COMMIT or the checkout).")
    checks: dict[str, DependencyCheck]


class Probe(BaseModel):
    """The answer of /livez and /readyz."""

    status: Literal["ok", "not_ready"]
    reason: str | None = Field(default=None, description="Why not ready: draining, database, migrations.")


class LimitUsage(BaseModel):
    scope: Literal["daily", "submit", "participant"] = Field(
        description="daily: requests over all limited routes; submit: accepted submissions from "
        "this address; participant: accepted submissions with this API key (from any address)."
    )
    limit: str = Field(description='The limit, e.g. "10 per 1 hour".')
    amount: int = Field(description="What the limit allows per window (X-RateLimit-Limit).")
    remaining: int = Field(description="What remains now (X-RateLimit-Remaining).")
    reset_at: int = Field(description="Epoch second when a unit frees up (X-RateLimit-Reset).")


class Quota(BaseModel):
    address: str = Field(description="The client address the limits are counted against.")
    participant: str | None = Field(None, description="The participant of the API key sent, if any.")
    enabled: bool
    limits: list[LimitUsage]


class FieldProblem(BaseModel):
    field: str = Field(description='The field\'s name ("" for the whole body).')
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    request_id: str | None = Field(
        default=None, description="The request's id, as in the X-Request-ID header and the service's logs."
    )
    errors: list[FieldProblem] | None = None


Model = TypeVar("Model", bound=BaseModel)


MAX_LISTED_ERRORS = 20
"""An answer names at most this many bad fields (a body of thousands of unknown keys
would otherwise get an answer several times its size)."""


def validate(model: type[Model], data: dict[str, Any]) -> Model:
    """Validate `data` against `model`; raises InvalidInput (422) naming the bad fields (the
    first MAX_LISTED_ERRORS, then how many more)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [_field_error(err) for err in exc.errors(include_url=False)]
        fields = sorted({e.field for e in errors})
        named = ", ".join(fields[:MAX_LISTED_ERRORS])
        if len(fields) > MAX_LISTED_ERRORS:
            named += f" and {len(fields) - MAX_LISTED_ERRORS} more"
        raise InvalidInput(f"invalid fields: {named}", errors[:MAX_LISTED_ERRORS]) from None


def _field_error(err: Any) -> FieldError:
    field = ".".join(str(part) for part in err["loc"])
    kind = err["type"]
    if kind == "missing":
        message = "is required"
    elif kind == "extra_forbidden":
        message = "is not an accepted field"
    elif kind in ("is_instance_of", "decimal_type"):
        message = f"must be a number, got {json_type(err['input'])}"
    elif kind == "finite_number":
        message = "must be a finite number"
    else:
        message = err["msg"][0].lower() + err["msg"][1:]
    return FieldError(field, message)
