"""Participants: registering, reading one, and managing one's own API key.

POST /participants                 register (open, or admins only with GPUQ_OPEN_REGISTRATION=false)
GET  /participants/<name>          best score, rank, submission count, history (paginated)
GET  /participants/me              the same for the key's owner, with the key's prefix
POST /participants/me/key          rotate: a new key (shown once); the old one stops working
DELETE /participants/me/key        revoke: the key stops working (an admin can issue a new one)

Names are at least 3 characters, so "me" is never a participant's name.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, url_for

from gpuq import audit, participants, submissions
from gpuq.api import auth
from gpuq.api.body import read_json_object
from gpuq.api.params import HISTORY
from gpuq.api.schemas import ParticipantIn, validate
from gpuq.clock import iso_z, now
from gpuq.errors import Unauthorized
from gpuq.leaderboard import Entry, get_leaderboard
from gpuq.participants import Member
from gpuq.serialize import number
from gpuq.store.db import get_db

bp = Blueprint("participants", __name__)


def issued(member: Member, key: str) -> dict[str, Any]:
    """The answer that carries a new key (the only time it is ever shown)."""
    return {
        "name": member.name,
        "is_admin": member.is_admin,
        "api_key": key,
        "key_prefix": participants.prefix_of(key),
        "created_at": iso_z(now()),
    }


@bp.post("/participants")
def register():
    """Register; returns the participant's API key once."""
    admin = None
    if not current_app.config["GPUQ_SETTINGS"].open_registration:
        try:
            admin = auth.require_admin()
        except Unauthorized:
            raise Unauthorized("registration is closed: an admin creates participants") from None
    body = validate(ParticipantIn, read_json_object(request))
    return create(body.name, is_admin=False, actor=None if admin is None else admin.name)


def create(raw_name: str, is_admin: bool, actor: str | None) -> Response:
    """Create a participant and answer 201 with their key; an admin's creation (`actor`) is audited."""
    name = participants.normalise_name(raw_name)
    moment = now()
    with get_db().connect() as connection:
        member, key = participants.create(connection, name, is_admin=is_admin, moment=moment)
        if actor is not None:
            after = {"is_admin": is_admin}
            audit.record(
                connection, actor, "participant.create", f"participant:{name}", None, after, None, moment
            )
        connection.commit()
    response = jsonify(issued(member, key))
    response.status_code = 201
    response.headers["Location"] = url_for("participants.get_participant", name=member.name)
    return response


@bp.get("/participants/me")
def me():
    member = auth.require_participant()
    return jsonify(describe(member, own=True))


@bp.post("/participants/me/key")
def rotate_own_key():
    member = auth.require_participant()
    return change_key(member.name, member.name, rotate=True)


@bp.delete("/participants/me/key")
def revoke_own_key():
    member = auth.require_participant()
    return change_key(member.name, member.name, rotate=False)


def change_key(name: str, actor: str, rotate: bool) -> Response:
    """Rotate (a new key in the answer) or revoke `name`'s key; audited as done by `actor`."""
    moment = now()
    with get_db().connect() as connection:
        member = participants.get(connection, name)
        if rotate:
            key = participants.rotate_key(connection, member.id, moment)
        else:
            revoked = participants.revoke_keys(connection, member.id, moment)
        action = "key.rotate" if rotate else "key.revoke"
        audit.record(connection, actor, action, f"participant:{member.name}", None, None, None, moment)
        connection.commit()
    return jsonify(issued(member, key) if rotate else {"name": member.name, "revoked": revoked})


@bp.get("/participants/<name>")
def get_participant(name: str):
    with get_db().autocommit() as connection:
        member = participants.get(connection, name)
    return jsonify(describe(member, own=False))


def describe(member: Member, own: bool) -> dict[str, Any]:
    """Best score, rank (view best), submission count and one page of history."""
    limit, offset = HISTORY.read()
    with get_db().autocommit() as connection:
        summary = submissions.summary(connection, member.id)
        history = submissions.of_participant(connection, member.id, offset, limit)
        prefix = participants.live_key_prefix(connection, member.id) if own else None
    leader = summary.leader
    rank = get_leaderboard().rank(Entry.of(leader), "best") if leader is not None else None
    result: dict[str, Any] = {
        "name": member.name,
        "registered_at": iso_z(member.created_at),
        "disqualified": member.disqualified,
        "best_score": None if leader is None else number(leader.score),
        "rank": rank,
        "submission_count": summary.count,
        "history": [
            {
                "submission_id": item.id,
                "score": number(item.score),
                "status": item.status,
                "best": item.leads,
                "profile_version": item.profile_version,
                "submitted_at": iso_z(item.created_at),
            }
            for item in history
        ],
        "limit": limit,
        "offset": offset,
    }
    if own:
        result["key_prefix"] = prefix
    return result
