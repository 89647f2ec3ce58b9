"""Admin routes: participants, moderation, the scoring profile, the audit trail, the export.

Every path under /admin needs an admin's key (gpuq.api.auth guards them all
before routing). Each change and its audit record commit together; changes
that move the ranking rebuild the leaderboard index before answering.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context
from sqlalchemy import Connection, select

from gpuq import audit, export, moderation, participants, profiles, rescoring, slots
from gpuq.api import auth
from gpuq.api import slots as slots_api
from gpuq.api.body import read_json_object
from gpuq.api.params import AUDIT, bool_param, choice_param
from gpuq.api.participants import change_key, create
from gpuq.api.schemas import (
    AdminParticipantIn,
    PoolSizeIn,
    ProfileIn,
    ReasonIn,
    SlotIn,
    SlotPolicyIn,
    validate,
)
from gpuq.clock import iso_z, now
from gpuq.errors import FieldError, InvalidInput, NotFound
from gpuq.leaderboard import get_leaderboard
from gpuq.scoring import METRICS, Profile
from gpuq.serialize import number
from gpuq.store.db import get_db
from gpuq.store.models import MAX_SUBMISSION_ID, ScoringProfile

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _actor() -> str:
    return auth.require_admin().name


@bp.post("/participants")
def create_participant():
    body = validate(AdminParticipantIn, read_json_object(request))
    return create(body.name, is_admin=body.admin, actor=_actor())


@bp.post("/participants/<name>/key")
def rotate_key(name: str):
    return change_key(name, _actor(), rotate=True)


@bp.delete("/participants/<name>/key")
def revoke_key(name: str):
    return change_key(name, _actor(), rotate=False)


def _moderate(
    kind: str,
    disqualify: bool,
    change: Callable[..., tuple[dict, dict]],
    target: str,
    reindex: dict[str, int],
    slot_changes: list[slots.Change] | None = None,
):
    """Apply a moderation `change(connection, reason, moment)` with its audit record; the
    index entries concerned (`reindex`: the Leaderboard.reindex arguments) follow."""
    reason = validate(ReasonIn, read_json_object(request)).reason
    moment = now()
    action = f"{kind}.{'disqualify' if disqualify else 'reinstate'}"
    with get_db().connect() as connection:
        before, after = change(connection, reason, moment)
        audit.record(connection, _actor(), action, target, before, after, reason, moment)
        connection.commit()
    get_leaderboard().reindex(**reindex)
    slots_api.publish(slot_changes or [])
    slots_api.settle()
    return jsonify({"target": target, "action": action, "before": before, "after": after})


def _moderate_participant(name: str, disqualify: bool):
    with get_db().autocommit() as connection:
        member = participants.get(connection, name)

    revoked: list[slots.Change] = []

    def change(connection: Connection, reason: str, moment: dt.datetime) -> tuple[dict, dict]:
        states = moderation.set_participant(connection, member, disqualify, reason, moment)
        if disqualify:  # a disqualified participant keeps no slot
            lease = slots.revoke_participant(connection, member.id, slots_api.slot_clock(connection))
            revoked.extend([lease] if lease else [])
        return states

    target = f"participant:{member.name}"
    return _moderate("participant", disqualify, change, target, {"participant_id": member.id}, revoked)


@bp.post("/participants/<name>/disqualify")
def disqualify_participant(name: str):
    return _moderate_participant(name, disqualify=True)


@bp.post("/participants/<name>/reinstate")
def reinstate_participant(name: str):
    return _moderate_participant(name, disqualify=False)


def _moderate_submission(submission_id: int, disqualify: bool):
    if submission_id > MAX_SUBMISSION_ID:  # beyond BIGINT: cannot exist
        raise NotFound(f"no submission with id {submission_id}")

    def change(connection: Connection, reason: str, moment: dt.datetime) -> tuple[dict, dict]:
        return moderation.set_submission(connection, submission_id, disqualify, reason, moment)

    target = f"submission:{submission_id}"
    return _moderate("submission", disqualify, change, target, {"submission_id": submission_id})


@bp.post("/submissions/<int:submission_id>/disqualify")
def disqualify_submission(submission_id: int):
    return _moderate_submission(submission_id, disqualify=True)


@bp.post("/submissions/<int:submission_id>/reinstate")
def reinstate_submission(submission_id: int):
    return _moderate_submission(submission_id, disqualify=False)


def _profile_json(profile: Profile, version: int, activated_at: dt.datetime) -> dict[str, Any]:
    return {
        "version": version,
        "weights": {m: number(profile.weights[m]) for m in METRICS},
        "time_best": number(profile.time_best),
        "time_worst": number(profile.time_worst),
        "activated_at": iso_z(activated_at),
    }


_PROFILES = ScoringProfile.__table__


@bp.get("/scoring")
def get_scoring():
    profiles.get_profile()  # a new database gets its first version here
    with get_db().autocommit() as connection:
        row = connection.execute(
            select(_PROFILES.c.version, _PROFILES.c.parameters, _PROFILES.c.created_at).where(
                _PROFILES.c.active
            )
        ).one()
    return jsonify(_profile_json(profiles.parse(row.parameters), row.version, row.created_at))


@bp.put("/scoring")
def put_scoring():
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
    settings = current_app.config["GPUQ_SETTINGS"]
    profiles.get_profile()  # a new database gets its first version here
    slots_api.ensure_seeded()
    moment = now()
    with get_db().connect() as connection:
        current = profiles.active(connection)
        if current is not None and current[0] == new:
            return jsonify(
                {
                    "dry_run": dry_run,
                    "changed": False,
                    "previous_version": current[1],
                    "version": None if dry_run else current[1],
                    "rescored": 0,
                    "scores_changed": 0,
                    "leaders": [],
                    "slot_line": None,
                }
            )
        line_before = _slot_line(connection)
        outcome = rescoring.change_profile(connection, new, moment, dry_run, settings.admin_timeout)
        result = {
            "dry_run": dry_run,
            "changed": True,
            "previous_version": outcome.previous_version,
            "version": outcome.version,
            "rescored": outcome.rescored,
            "scores_changed": outcome.scores_changed,
            "leaders": [
                {**item, "score": number(item["score"]), "previous_score": number(item["previous_score"])}
                for item in outcome.leaders
            ],
            "slot_line": {"before": line_before, "after": _slot_line(connection)},
        }
        if dry_run:
            connection.rollback()
            return jsonify(result)
        before = {"version": outcome.previous_version, **(current[0].as_dict() if current else {})}
        after = {"version": outcome.version, **new.as_dict()}
        summary = {"rescored": outcome.rescored, "scores_changed": outcome.scores_changed}
        audit.record(
            connection,
            _actor(),
            "scoring.change",
            "scoring",
            before,
            {**after, **summary},
            body.reason,
            moment,
        )
        connection.commit()
    profiles.forget()
    get_leaderboard().refresh()
    slots_api.settle()
    return jsonify(result)


def _slot_line(connection: Connection) -> list[str]:
    """Who is next in line for a slot, by name (slot holders keep their leases on a rescoring)."""
    moment = slots_api.slot_now(connection)
    line = slots.in_line(connection, moment, slots.policy(connection), slots_api.IN_LINE)
    return [entry["participant"] for entry in line]


@bp.get("/audit")
def audit_trail():
    limit, offset = AUDIT.read()
    with get_db().autocommit() as connection:
        events, total = audit.page(connection, offset, limit)
    return jsonify({"events": events, "total": total, "limit": limit, "offset": offset})


@bp.get("/export")
def export_all():
    fmt = choice_param("format", tuple(export.FORMATS), "json")
    profiles.get_profile()  # a new database gets its first version here
    with get_db().autocommit() as connection:  # the database's, not this worker's copy
        found = profiles.active(connection)
    header = {"exported_at": iso_z(now()), "active_profile_version": found[1] if found else None}
    body = export.stream(get_db().connect, fmt, header)
    response = Response(stream_with_context(body), mimetype=export.FORMATS[fmt])
    stamp = now().strftime("%Y%m%dT%H%M%SZ")
    response.headers["Content-Disposition"] = f'attachment; filename="gpuq-export-{stamp}.{fmt}"'
    return response


# The slot pool (see gpuq.slots). Each change is audited and followed by an allocation.


def _jsonable(pool: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.items() if k != "seconds_left"} for item in pool]


def _slot_change(action: str, target: str, change: Callable[..., Any], reason: str | None = None):
    """Run `change(connection, moment)` with its audit record (the pool before and after), then settle."""
    slots_api.ensure_seeded()
    with get_db().connect() as connection:
        moment = slots_api.slot_now(connection)
        before = slots.pool(connection, moment)
        result = change(connection, moment)
        after = slots.pool(connection, moment)
        audit.record(
            connection, _actor(), action, target, {"slots": before}, {"slots": after}, reason, moment
        )
        connection.commit()
    if isinstance(result, slots.Change):
        slots_api.publish([result])
    slots_api.settle()
    return jsonify({"action": action, "target": target, "slots": slots_api.current_pool()})


@bp.post("/slots")
def add_slot():
    name = slots.check_slot_name(validate(SlotIn, read_json_object(request)).name)
    return _slot_change("slot.add", f"slot:{name}", lambda c, m: slots.add_slot(c, name, m))


@bp.delete("/slots/<name>")
def remove_slot(name: str):
    return _slot_change("slot.remove", f"slot:{name}", lambda c, m: slots.remove_slot(c, name, m))


@bp.post("/slots/<name>/drain")
def drain_slot(name: str):
    return _slot_change("slot.drain", f"slot:{name}", lambda c, m: slots.set_draining(c, name, True))


@bp.post("/slots/<name>/resume")
def resume_slot(name: str):
    return _slot_change("slot.resume", f"slot:{name}", lambda c, m: slots.set_draining(c, name, False))


@bp.post("/slots/<name>/revoke")
def revoke_slot(name: str):
    reason = validate(ReasonIn, read_json_object(request)).reason

    def change(connection: Connection, moment: dt.datetime) -> slots.Change:
        return slots.revoke(connection, name, slots_api.slot_clock(connection))

    return _slot_change("slot.revoke", f"slot:{name}", change, reason)


@bp.put("/slots/size")
def resize_pool():
    size = validate(PoolSizeIn, read_json_object(request)).size
    return _slot_change("slot.resize", "slots", lambda c, m: slots.resize(c, size, m))


@bp.get("/slots/policy")
def get_slot_policy():
    slots_api.ensure_seeded()
    with get_db().autocommit() as connection:
        return jsonify(slots_api.policy_json(slots.policy(connection)))


@bp.put("/slots/policy")
def put_slot_policy():
    body = validate(SlotPolicyIn, read_json_object(request))
    slots_api.ensure_seeded()
    with get_db().connect() as connection:
        moment = slots_api.slot_now(connection)
        current = slots.policy(connection)
        new = current.updated(
            lease_hours=body.lease_hours,
            cooldown_hours=body.cooldown_hours,
            claim_minutes=body.claim_minutes,
            qualifying_score=body.qualifying_score,
        )
        before, after = slots.set_policy(connection, new, moment)
        audit.record(
            connection, _actor(), "slot.policy", "slots", before.as_dict(), after.as_dict(), None, moment
        )
        connection.commit()
    slots_api.settle()
    return jsonify(slots_api.policy_json(new))
