"""Admin routes: participants, moderation, the scoring profile, the slot pool, the audit
trail, the export.

Every path under /admin needs an admin's key (gpuq.api.auth guards them all
before routing). Each change and its audit record commit together (in the
services: gpuq.participants.Registry, gpuq.moderation, gpuq.submissions.rescoring,
gpuq.slots.service); changes that move the ranking bring the leaderboard
index in line before answering.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, Response, jsonify, request, stream_with_context, url_for
from sqlalchemy import Connection

from gpuq import audit, export
from gpuq.api import auth, params, spec
from gpuq.api.body import read_json_object
from gpuq.api.context import runtime
from gpuq.api.params import AUDIT, HISTORY, bool_param, choice_param
from gpuq.api.schemas import (
    AdminParticipantIn,
    PoolSizeIn,
    ProfileIn,
    ReasonIn,
    ResultPolicyIn,
    SlotIn,
    SlotModelIn,
    SlotPolicyIn,
    validate,
)
from gpuq.clock import iso_z
from gpuq.errors import FieldError, InvalidInput
from gpuq.moderation import Decision
from gpuq.scoring import METRICS, Profile
from gpuq.serialize import issued, key_change, number
from gpuq.slots import rules as slot_rules
from gpuq.slots.service import PoolChange, policy_json
from gpuq.submissions import store
from gpuq.submissions.profiles import active

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _actor() -> str:
    return auth.require_admin().name


@bp.post("/participants")
def create_participant() -> Response:
    body = validate(AdminParticipantIn, read_json_object(request))
    member, key = runtime().participants.create(body.name, is_admin=body.admin, actor=_actor())
    response = jsonify(issued(member, key, runtime().clock()))
    response.status_code = 201
    response.headers["Location"] = url_for("participants.get_participant", name=member.name)
    return response


@bp.post("/participants/<name>/key")
def rotate_key(name: str) -> Response:
    return jsonify(
        key_change(*runtime().participants.change_key(name, _actor(), rotate=True), runtime().clock())
    )


@bp.delete("/participants/<name>/key")
def revoke_key(name: str) -> Response:
    return jsonify(
        key_change(*runtime().participants.change_key(name, _actor(), rotate=False), runtime().clock())
    )


def _decided(decision: Decision) -> Response:
    return jsonify(
        {
            "target": decision.target,
            "action": decision.action,
            "before": decision.before,
            "after": decision.after,
        }
    )


def _reason() -> str:
    return validate(ReasonIn, read_json_object(request)).reason


# The participant, or a possible submission id, is looked up before the body is read:
# an unknown one answers 404 whatever the body says.


@bp.post("/participants/<name>/disqualify")
def disqualify_participant(name: str) -> Response:
    moderation = runtime().moderation
    member = moderation.find(name)
    return _decided(moderation.participant(member, True, _reason(), _actor()))


@bp.post("/participants/<name>/reinstate")
def reinstate_participant(name: str) -> Response:
    moderation = runtime().moderation
    member = moderation.find(name)
    return _decided(moderation.participant(member, False, _reason(), _actor()))


@bp.post("/submissions/<int:submission_id>/disqualify")
def disqualify_submission(submission_id: int) -> Response:
    store.check_id(submission_id)
    return _decided(runtime().moderation.submission(submission_id, True, _reason(), _actor()))


@bp.post("/submissions/<int:submission_id>/reinstate")
def reinstate_submission(submission_id: int) -> Response:
    store.check_id(submission_id)
    return _decided(runtime().moderation.submission(submission_id, False, _reason(), _actor()))


@bp.post("/submissions/<int:submission_id>/accept")
def accept_submission(submission_id: int) -> Response:
    """Rank a result the results policy held for review."""
    store.check_id(submission_id)
    return _decided(runtime().moderation.accept(submission_id, _reason(), _actor()))


@bp.get("/submissions")
def withheld_submissions() -> Response:
    """The results kept off the board, for review: ?withheld=review (the default), evidence or policy."""
    reason = choice_param("withheld", store.WITHHELD, "review")
    limit, offset = HISTORY.read()
    found, total = runtime().submissions.withheld(reason, offset, limit)
    return jsonify(
        {"submissions": found, "withheld": reason, "total": total, "limit": limit, "offset": offset}
    )


@bp.get("/submissions/<int:submission_id>/evidence")
def get_evidence(submission_id: int) -> Response:
    """A measured result's stored evidence (every sample) and its checks."""
    response = jsonify(runtime().submissions.evidence(submission_id))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/results/policy")
def get_result_policy() -> Response:
    return jsonify(runtime().submissions.result_policy().to_json())


@bp.put("/results/policy")
def put_result_policy() -> Response:
    body = validate(ResultPolicyIn, read_json_object(request))
    hold = None if body.hold_flags is None else list(body.hold_flags)
    return jsonify(
        runtime().submissions.set_result_policy(_actor(), body.self_reported_ranked, hold).to_json()
    )


def _profile_json(profile: Profile, version: int, activated_at: dt.datetime) -> dict[str, Any]:
    return {
        "version": version,
        "weights": {m: number(profile.weights[m]) for m in METRICS},
        "time_best": number(profile.time_best),
        "time_worst": number(profile.time_worst),
        "activated_at": iso_z(activated_at),
    }


@bp.get("/scoring")
def get_scoring() -> Response:
    return jsonify(_profile_json(*runtime().scoring.current()))


@bp.put("/scoring")
def put_scoring() -> Response:
    """A new profile: ?dry_run=true reports what would change and changes nothing."""
    dry_run = bool_param("dry_run")
    body = validate(ProfileIn, read_json_object(request))
    try:
        new = Profile(
            weights={m: getattr(body.weights, m) for m in METRICS},
            time_best=body.time_best,
            time_worst=body.time_worst,
        )
    except ValueError as exc:
        field = "weights" if "weight" in str(exc) else "time_worst"
        raise InvalidInput(f"invalid fields: {field}", [FieldError(field, str(exc))]) from None
    report = runtime().scoring.change(new, dry_run=dry_run, actor=_actor(), reason=body.reason)
    outcome = report.outcome
    return jsonify(
        {
            "dry_run": report.dry_run,
            "changed": report.changed,
            "previous_version": report.previous_version,
            "version": report.version,
            "rescored": 0 if outcome is None else outcome.rescored,
            "scores_changed": 0 if outcome is None else outcome.scores_changed,
            "leaders": []
            if outcome is None
            else [
                {**item, "score": number(item["score"]), "previous_score": number(item["previous_score"])}
                for item in outcome.leaders
            ],
            "slot_line": None
            if report.slot_line is None
            else {"before": report.slot_line[0], "after": report.slot_line[1]},
        }
    )


@bp.get("/audit")
def audit_trail() -> Response:
    limit, offset = AUDIT.read()
    with runtime().database.autocommit() as connection:
        events, total = audit.page(connection, offset, limit)
    return jsonify({"events": events, "total": total, "limit": limit, "offset": offset})


@bp.get("/export")
def export_all() -> Response:
    fmt = choice_param("format", tuple(export.FORMATS), "json")
    services = runtime()
    services.profiles.get()  # a new database gets its first version here
    with services.database.autocommit() as connection:  # the database's, not this worker's copy
        found = active(connection)
    moment = services.clock()
    header = {"exported_at": iso_z(moment), "active_profile_version": found[1] if found else None}
    body = export.stream(services.database.connect, fmt, header)
    response = Response(stream_with_context(body), mimetype=export.FORMATS[fmt])
    stamp = moment.strftime("%Y%m%dT%H%M%SZ")
    response.headers["Content-Disposition"] = f'attachment; filename="gpuq-export-{stamp}.{fmt}"'
    return response


# The slot pool (see gpuq.slots). Each change is audited and followed by an allocation.


def _pool_changed(action: str, target: str, change: PoolChange, reason: str | None = None) -> Response:
    pool = runtime().slots.administer(_actor(), action, target, change, reason)
    return jsonify({"action": action, "target": target, "slots": pool})


@bp.post("/slots")
def add_slot() -> Response:
    body = validate(SlotIn, read_json_object(request))
    name = slot_rules.check_slot_name(body.name)
    return _pool_changed(
        "slot.add", f"slot:{name}", lambda c, m: slot_rules.add_slot(c, name, m, body.gpu_model)
    )


@bp.put("/slots/<name>/gpu-model")
def tie_slot(name: str) -> Response:
    model = validate(SlotModelIn, read_json_object(request)).gpu_model
    return _pool_changed(
        "slot.gpu_model", f"slot:{name}", lambda c, m: slot_rules.set_gpu_model(c, name, model)
    )


@bp.delete("/slots/<name>")
def remove_slot(name: str) -> Response:
    return _pool_changed("slot.remove", f"slot:{name}", lambda c, m: slot_rules.remove_slot(c, name, m))


@bp.post("/slots/<name>/drain")
def drain_slot(name: str) -> Response:
    return _pool_changed("slot.drain", f"slot:{name}", lambda c, m: slot_rules.set_draining(c, name, True))


@bp.post("/slots/<name>/resume")
def resume_slot(name: str) -> Response:
    return _pool_changed("slot.resume", f"slot:{name}", lambda c, m: slot_rules.set_draining(c, name, False))


@bp.post("/slots/<name>/revoke")
def revoke_slot(name: str) -> Response:
    reason = validate(ReasonIn, read_json_object(request)).reason
    slots = runtime().slots

    def change(connection: Connection, moment: dt.datetime) -> slot_rules.Change:
        return slot_rules.revoke(connection, name, slots.clock(connection))

    return _pool_changed("slot.revoke", f"slot:{name}", change, reason)


@bp.put("/slots/size")
def resize_pool() -> Response:
    size = validate(PoolSizeIn, read_json_object(request)).size
    return _pool_changed("slot.resize", "slots", lambda c, m: slot_rules.resize(c, size, m))


@bp.get("/slots/policy")
def get_slot_policy() -> Response:
    return jsonify(policy_json(runtime().slots.policy()))


@bp.put("/slots/policy")
def put_slot_policy() -> Response:
    body = validate(SlotPolicyIn, read_json_object(request))
    new = runtime().slots.set_policy(
        _actor(),
        lease_hours=body.lease_hours,
        cooldown_hours=body.cooldown_hours,
        claim_minutes=body.claim_minutes,
        qualifying_score=body.qualifying_score,
        measured_only=body.measured_only,
    )
    return jsonify(policy_json(new))


# Its routes in the OpenAPI document (gpuq.api.openapi assembles every module's).
OPERATIONS: spec.Operations = {
    ("/admin/participants", "post"): spec.admin(
        "adminCreateParticipant",
        "Create a participant (or an admin); the key is in the answer, once",
        {
            "201": spec.json_response("KeyIssued", "Created."),
            "409": spec.problem("The name is taken (letter case does not matter)."),
            **spec.BODY_PROBLEMS,
        },
        requestBody=spec.body("AdminParticipantIn"),
    ),
    ("/admin/participants/{name}/key", "post"): spec.admin(
        "adminRotateKey",
        "Issue a participant a new key; their old one stops working",
        {"200": spec.json_response("KeyIssued", "The new key."), "404": spec.problem("No such participant.")},
        parameters=[spec.NAME],
    ),
    ("/admin/participants/{name}/key", "delete"): spec.admin(
        "adminRevokeKey",
        "Revoke a participant's key",
        {"200": spec.json_response("KeyRevoked", "Revoked."), "404": spec.problem("No such participant.")},
        parameters=[spec.NAME],
    ),
    **{
        (f"/admin/{kind}/{{{key}}}/{action}", "post"): spec.admin(
            f"admin{action.title()}{noun.title()}",
            f"{action.title()} a {noun}: {effect}",
            spec.MODERATION,
            parameters=[parameter],
            requestBody=spec.body("ReasonIn"),
        )
        for kind, key, noun, parameter in (
            ("participants", "name", "participant", spec.NAME),
            ("submissions", "submission_id", "submission", spec.SUBMISSION_ID),
        )
        for action, effect in (
            ("disqualify", "out of the leaderboard (kept stored)"),
            ("reinstate", "back on the leaderboard"),
        )
    },
    ("/admin/scoring", "get"): spec.admin(
        "adminGetScoring",
        "The active scoring profile",
        {"200": spec.json_response("ProfileOut", "The active profile.")},
    ),
    ("/admin/scoring", "put"): spec.admin(
        "adminPutScoring",
        "Change the scoring profile: a new version, every submission rescored",
        {
            "200": spec.json_response("ProfileChange", "Applied (or, with dry_run, what applying would do)."),
            "400": spec.problem("Malformed JSON or a bad dry_run."),
            "413": spec.problem("The body is too large."),
            "415": spec.problem("Content-Type is not JSON."),
            "422": spec.problem("Weights that do not sum to 1, bounds out of order, ..."),
        },
        description="With `dry_run=true` nothing changes: the answer shows how the top of the "
        "leaderboard (view best) would move.",
        parameters=[
            {
                "name": "dry_run",
                "in": "query",
                "required": False,
                "schema": {"type": "boolean", "default": False},
            }
        ],
        requestBody=spec.body("ProfileIn"),
    ),
    ("/admin/audit", "get"): spec.admin(
        "adminAudit",
        "Every admin action, newest first",
        {
            "200": spec.json_response("AuditPage", "One page of the trail."),
            "400": spec.problem("A bad limit or offset."),
        },
        parameters=params.AUDIT.openapi(),
    ),
    ("/admin/export", "get"): spec.admin(
        "adminExport",
        "Every submission with metrics, points, score, profile version, status and ranks",
        {
            "200": {
                "description": "Streamed, in leaderboard order (then the unranked).",
                "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "application/json": {"schema": {"type": "object"}},
                },
            },
            "400": spec.problem("A bad format."),
        },
        parameters=[
            {
                "name": "format",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "enum": ["json", "csv"], "default": "json"},
            }
        ],
    ),
    ("/admin/slots", "post"): spec.admin(
        "adminAddSlot",
        "Add a slot to the pool",
        {**spec.POOL_CHANGED, "409": spec.problem("Already in the pool."), **spec.BODY_PROBLEMS},
        requestBody=spec.body("SlotIn"),
    ),
    ("/admin/slots/{name}/gpu-model", "put"): spec.admin(
        "adminTieSlot",
        "Tie a slot to a GPU model (its next lease goes to the best result on that model), or untie it",
        {**spec.POOL_CHANGED, "404": spec.problem("No such slot."), **spec.BODY_PROBLEMS},
        parameters=[spec.SLOT],
        requestBody=spec.body("SlotModelIn"),
    ),
    ("/admin/slots/{name}", "delete"): spec.admin(
        "adminRemoveSlot",
        "Remove a free slot from the pool",
        {
            **spec.POOL_CHANGED,
            "404": spec.problem("No such slot."),
            "409": spec.problem("Leased: drain or revoke first."),
        },
        parameters=[spec.SLOT],
    ),
    ("/admin/slots/{name}/drain", "post"): spec.admin(
        "adminDrainSlot",
        "No new lease on this slot; the current one runs out",
        {**spec.POOL_CHANGED, "404": spec.problem("No such slot.")},
        parameters=[spec.SLOT],
    ),
    ("/admin/slots/{name}/resume", "post"): spec.admin(
        "adminResumeSlot",
        "Lease a drained slot again",
        {**spec.POOL_CHANGED, "404": spec.problem("No such slot.")},
        parameters=[spec.SLOT],
    ),
    ("/admin/slots/{name}/revoke", "post"): spec.admin(
        "adminRevokeSlot",
        "End the slot's live lease now",
        {**spec.POOL_CHANGED, "404": spec.problem("No such slot, or no live lease."), **spec.BODY_PROBLEMS},
        parameters=[spec.SLOT],
        requestBody=spec.body("ReasonIn"),
    ),
    ("/admin/slots/size", "put"): spec.admin(
        "adminResizePool",
        "Resize the pool to gpu-0 .. gpu-(size-1)",
        {**spec.POOL_CHANGED, **spec.BODY_PROBLEMS},
        requestBody=spec.body("PoolSizeIn"),
    ),
    ("/admin/slots/policy", "get"): spec.admin(
        "adminSlotPolicy", "The slot policy", {"200": spec.json_response("SlotPolicyOut", "The policy.")}
    ),
    ("/admin/submissions/{submission_id}/accept", "post"): spec.admin(
        "adminAcceptSubmission",
        "Accept a result held for review (GPUQ_HOLD_FLAGS): it is ranked from now on",
        {**spec.MODERATION, "409": spec.problem("The submission is not held for review.")},
        parameters=[spec.SUBMISSION_ID],
        requestBody=spec.body("ReasonIn"),
    ),
    ("/admin/submissions", "get"): spec.admin(
        "adminWithheldSubmissions",
        "The results kept off the board, newest first: held for review, or withheld by evidence or policy",
        {
            "200": {
                "description": "One page.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "400": spec.problem("A bad withheld, limit or offset."),
        },
        parameters=[
            {
                "name": "withheld",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "enum": ["review", "evidence", "policy"], "default": "review"},
            },
            *HISTORY.openapi(),
        ],
    ),
    ("/admin/submissions/{submission_id}/evidence", "get"): spec.admin(
        "adminGetEvidence",
        "A measured result's stored evidence (the GPU, every sample, the run) and its checks",
        {
            "200": {
                "description": "The evidence.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "404": spec.problem("No such submission, or a self-reported one."),
        },
        parameters=[spec.SUBMISSION_ID],
    ),
    ("/admin/results/policy", "get"): spec.admin(
        "adminGetResultPolicy",
        "The results policy: whether self-reported results rank, which flags hold a result",
        {"200": spec.json_response("ResultPolicyOut", "The policy now.")},
    ),
    ("/admin/results/policy", "put"): spec.admin(
        "adminPutResultPolicy",
        "Change the results policy (for results submitted from now on)",
        {"200": spec.json_response("ResultPolicyOut", "The policy now."), **spec.BODY_PROBLEMS},
        requestBody=spec.body("ResultPolicyIn"),
    ),
    ("/admin/slots/policy", "put"): spec.admin(
        "adminPutSlotPolicy",
        "Change the slot policy (running leases keep their expiry)",
        {"200": spec.json_response("SlotPolicyOut", "The policy now."), **spec.BODY_PROBLEMS},
        requestBody=spec.body("SlotPolicyIn"),
    ),
}
