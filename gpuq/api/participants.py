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

from flask import Blueprint, Response, jsonify, request, url_for

from gpuq import participants
from gpuq.api import auth, params, spec
from gpuq.api.body import read_json_object
from gpuq.api.context import runtime
from gpuq.api.params import HISTORY
from gpuq.api.schemas import ParticipantIn, validate
from gpuq.clock import iso_z
from gpuq.errors import Unauthorized
from gpuq.participants import Member
from gpuq.serialize import issued, key_change, number
from gpuq.submissions import store

bp = Blueprint("participants", __name__)


@bp.post("/participants")
def register() -> Response:
    """Register; returns the participant's API key once."""
    admin = None
    if not runtime().settings.open_registration:
        try:
            admin = auth.require_admin()
        except Unauthorized:
            raise Unauthorized("registration is closed: an admin creates participants") from None
    body = validate(ParticipantIn, read_json_object(request))
    actor = None if admin is None else admin.name
    member, key = runtime().participants.create(body.name, is_admin=False, actor=actor)
    response = jsonify(issued(member, key, runtime().clock()))
    response.status_code = 201
    response.headers["Location"] = url_for("participants.get_participant", name=member.name)
    return response


@bp.get("/participants/me")
def me() -> Response:
    member = auth.require_participant()
    return jsonify(describe(member, own=True))


@bp.post("/participants/me/key")
def rotate_own_key() -> Response:
    member = auth.require_participant()
    changed = runtime().participants.change_key(member.name, member.name, rotate=True)
    return jsonify(key_change(*changed, runtime().clock()))


@bp.delete("/participants/me/key")
def revoke_own_key() -> Response:
    member = auth.require_participant()
    changed = runtime().participants.change_key(member.name, member.name, rotate=False)
    return jsonify(key_change(*changed, runtime().clock()))


@bp.get("/participants/<name>")
def get_participant(name: str) -> Response:
    with runtime().database.autocommit() as connection:
        member = participants.get(connection, name)
    return jsonify(describe(member, own=False))


def describe(member: Member, own: bool) -> dict[str, Any]:
    """Best score, rank (view best), submission count and one page of history."""
    limit, offset = HISTORY.read()
    with runtime().database.autocommit() as connection:
        summary = store.summary(connection, member.id)
        history = store.of_participant(connection, member.id, offset, limit)
        prefix = participants.live_key_prefix(connection, member.id) if own else None
    leader = summary.leader
    rank = runtime().board.rank(leader.entry, "best") if leader is not None else None
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


# Its routes in the OpenAPI document (gpuq.api.openapi assembles every module's).
OPERATIONS: spec.Operations = {
    ("/participants", "post"): {
        "operationId": "register",
        "summary": "Register a participant; the API key is in the answer, once",
        "description": "Open to anyone unless GPUQ_OPEN_REGISTRATION=false; then an admin key is needed.",
        "tags": ["participants"],
        "requestBody": spec.body("ParticipantIn"),
        "responses": {
            "201": spec.json_response("KeyIssued", "Registered."),
            **spec.BODY_PROBLEMS,
            "401": spec.problem("Registration is closed and no admin key was sent."),
            "403": spec.FORBIDDEN,
            "409": spec.problem("The name is taken (letter case does not matter)."),
            "429": spec.LIMITED,
            "503": spec.DATABASE_DOWN,
            "500": spec.SERVER_ERROR,
        },
    },
    ("/participants/{name}", "get"): {
        "operationId": "getParticipant",
        "summary": "A participant's best score, rank, submission count and history",
        "tags": ["participants"],
        "parameters": [spec.NAME, *params.HISTORY.openapi()],
        "responses": {
            "200": spec.json_response("ParticipantOut", "The participant."),
            "400": spec.problem("A bad limit or offset."),
            "401": spec.problem(
                "The name `me` (never a participant's: names have 3-32 characters) is the caller's "
                "own page, GET /participants/me, which needs an API key."
            ),
            "404": spec.problem("No such participant."),
            "429": spec.LIMITED,
            "503": spec.DATABASE_DOWN,
            "500": spec.SERVER_ERROR,
        },
    },
    ("/participants/me", "get"): {
        "operationId": "getMe",
        "summary": "The key owner's own page, with the key's prefix",
        "tags": ["participants"],
        "security": spec.BEARER,
        "parameters": params.HISTORY.openapi(),
        "responses": {
            "200": spec.json_response("ParticipantOut", "The participant."),
            "400": spec.problem("A bad limit or offset."),
            "401": spec.UNAUTHORIZED,
            "429": spec.LIMITED,
            "503": spec.DATABASE_DOWN,
            "500": spec.SERVER_ERROR,
        },
    },
    ("/participants/me/key", "post"): {
        "operationId": "rotateMyKey",
        "summary": "Rotate one's own API key: a new key (shown once); the old one stops working",
        "tags": ["participants"],
        "security": spec.BEARER,
        "responses": {
            "200": spec.json_response("KeyIssued", "The new key."),
            "401": spec.UNAUTHORIZED,
            "429": spec.LIMITED,
            "503": spec.DATABASE_DOWN,
            "500": spec.SERVER_ERROR,
        },
    },
    ("/participants/me/key", "delete"): {
        "operationId": "revokeMyKey",
        "summary": "Revoke one's own API key (an admin can issue a new one)",
        "tags": ["participants"],
        "security": spec.BEARER,
        "responses": {
            "200": spec.json_response("KeyRevoked", "Revoked."),
            "401": spec.UNAUTHORIZED,
            "429": spec.LIMITED,
            "503": spec.DATABASE_DOWN,
            "500": spec.SERVER_ERROR,
        },
    },
}
