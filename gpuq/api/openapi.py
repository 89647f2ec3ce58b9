"""The OpenAPI 3.1 document, built from the same Pydantic models that validate
requests (and describe responses), served at /openapi.json; Swagger UI at /docs.

Every route is listed in OPERATIONS; a test checks that no route is missing.
"""

from __future__ import annotations

import functools
from typing import Any

from flask import Blueprint, Response, json, render_template
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gpuq.api import params, schemas
from gpuq.api.limits import exempt
from gpuq.store.models import MAX_SUBMISSION_ID

bp = Blueprint("openapi", __name__)

PROBLEM = "application/problem+json"
REF = "#/components/schemas/{model}"

_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Makes a retry safe: the same key and body within 24 h return the first response "
    "(with `Idempotent-Replayed: true`) instead of storing again.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"},
}
_RATE_HEADERS = {
    "X-RateLimit-Limit": {"schema": {"type": "integer"}, "description": "The limit being reported."},
    "X-RateLimit-Remaining": {"schema": {"type": "integer"}, "description": "What remains of it."},
    "X-RateLimit-Reset": {"schema": {"type": "integer"}, "description": "Epoch second when a unit frees up."},
}


def _problem(description: str, **headers: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM: {"schema": {"$ref": REF.format(model="Problem")}}},
    }
    if headers:
        response["headers"] = {
            name: {"schema": {"type": "integer"}, "description": text} for name, text in headers.items()
        }
    return response


def _json(model: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}},
    }
    if headers:
        response["headers"] = headers
    return response


_LIMITED = _problem("A rate limit is used up.", **{"Retry-After": "Seconds to wait."})
_DATABASE_DOWN = _problem(
    "The database is unavailable; nothing was stored.", **{"Retry-After": "Seconds to wait."}
)
_SERVER_ERROR = _problem("An unexpected error (a bug).")

_VIEW = {
    "name": "view",
    "in": "query",
    "required": False,
    "description": "best: each participant once (their best; anonymous submissions each stand alone); "
    "all: every submission.",
    "schema": {"type": "string", "enum": ["best", "all"], "default": "best"},
}
_UNAUTHORIZED = _problem("No API key, or one that is unknown, revoked or malformed.")
_FORBIDDEN = _problem("The key is valid but not an admin's.")
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]

OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("/", "get"): {
        "operationId": "health",
        "summary": "Health and the state of each dependency",
        "tags": ["service"],
        "responses": {
            "200": _json("Health", "Healthy, or degraded (Redis down, database up)."),
            "503": _json("Health", "Unhealthy: the database does not answer."),
        },
    },
    ("/submit_qualification", "post"): {
        "operationId": "submitQualification",
        "summary": "Submit the five benchmark metrics; get the score and rank",
        "tags": ["submissions"],
        "security": [{}, {"bearer": []}],
        "parameters": [_IDEMPOTENCY_KEY],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(model="SubmissionIn")}}},
        },
        "responses": {
            "201": {
                **_json(
                    "SubmissionCreated",
                    "Scored and stored (committed before this answer).",
                    {
                        "Location": {"schema": {"type": "string"}, "description": "The submission's URL."},
                        **_RATE_HEADERS,
                    },
                ),
                "links": {
                    "GetSubmission": {
                        "operationId": "getSubmission",
                        "parameters": {"submission_id": "$response.body#/submission_id"},
                    }
                },
            },
            "400": _problem(
                "Malformed: not JSON, NaN/Infinity, duplicate keys, too deep, a bad Idempotency-Key."
            ),
            "401": _problem("A bad API key, or none while anonymous submissions are switched off."),
            "403": _problem("The participant is disqualified."),
            "409": _problem("A request with this Idempotency-Key is still being processed."),
            "413": _problem("The body is too large."),
            "415": _problem("Content-Type is not JSON."),
            "422": _problem(
                "The body breaks the input rules (`errors` names each field), or the "
                "Idempotency-Key was used with a different body."
            ),
            "429": _LIMITED,
            "503": _DATABASE_DOWN,
            "500": _SERVER_ERROR,
        },
    },
    ("/submissions/{submission_id}", "get"): {
        "operationId": "getSubmission",
        "summary": "One stored submission with its breakdown and current rank",
        "tags": ["submissions"],
        "parameters": [
            {
                "name": "submission_id",
                "in": "path",
                "required": True,
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_SUBMISSION_ID},
            }
        ],
        "responses": {
            "200": _json("SubmissionOut", "The submission.", _RATE_HEADERS),
            "404": _problem("No such submission."),
            "429": _LIMITED,
            "503": _DATABASE_DOWN,
            "500": _SERVER_ERROR,
        },
    },
    ("/leaderboard", "get"): {
        "operationId": "leaderboard",
        "summary": "The leaderboard: score descending, ties to the earlier submission",
        "tags": ["leaderboard"],
        "parameters": [*params.LEADERBOARD.openapi(), _VIEW],
        "responses": {
            "200": _json("LeaderboardPage", "One page of the board."),
            "400": _problem("A bad limit, offset or view."),
            "503": _DATABASE_DOWN,
            "500": _SERVER_ERROR,
        },
    },
    ("/leaderboard/stream", "get"): {
        "operationId": "leaderboardStream",
        "summary": "The live board as Server-Sent Events",
        "description": "A `snapshot` event on connect (leaders, score histogram, records, slots), then "
        "`submission` and `leaderboard` events; a comment line as heartbeat. Reconnecting clients get a "
        "fresh snapshot.",
        "tags": ["leaderboard"],
        "responses": {
            "200": {
                "description": "An event stream",
                "content": {
                    "text/event-stream": {
                        "schema": {"description": "Server-Sent Events; each data line is JSON"}
                    }
                },
            },
            "429": _problem("Too many open streams from this address."),
            "503": _problem(
                "This worker holds as many streams as it may.", **{"Retry-After": "Seconds to wait."}
            ),
            "500": _SERVER_ERROR,
        },
    },
    ("/board", "get"): {
        "operationId": "board",
        "summary": "The live board page (for people and big screens)",
        "tags": ["leaderboard"],
        "responses": {
            "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}
        },
    },
    ("/quota", "get"): {
        "operationId": "quota",
        "summary": "The caller's limits, what remains of them, and when they reset",
        "tags": ["service"],
        "security": [{}, {"bearer": []}],
        "responses": {
            "200": _json("Quota", "The caller's quota (reading it uses none)."),
            "401": _UNAUTHORIZED,
            "500": _SERVER_ERROR,
        },
    },
    ("/openapi.json", "get"): {
        "operationId": "openapi",
        "summary": "This document",
        "tags": ["service"],
        "responses": {
            "200": {
                "description": "OpenAPI 3.1",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    },
    ("/docs", "get"): {
        "operationId": "docs",
        "summary": "Interactive documentation (works offline)",
        "tags": ["service"],
        "responses": {
            "200": {"description": "Swagger UI", "content": {"text/html": {"schema": {"type": "string"}}}}
        },
    },
}

_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_SUBMISSION_ID = {
    "name": "submission_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_SUBMISSION_ID},
}


def _body(model: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}}}


def _admin(operation_id: str, summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An admin operation: every one answers 401 without a key and 403 with a participant's."""
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["admin"],
        "security": _BEARER,
        **extra,
        "responses": {
            **responses,
            "401": _UNAUTHORIZED,
            "403": _FORBIDDEN,
            "503": _DATABASE_DOWN,
            "500": _SERVER_ERROR,
        },
    }


_BODY_PROBLEMS = {
    "400": _problem("Malformed JSON."),
    "413": _problem("The body is too large."),
    "415": _problem("Content-Type is not JSON."),
    "422": _problem("The body breaks the input rules (`errors` names each field)."),
}
_MODERATION = {
    "200": _json("Moderated", "Done; the state before and after (also in the audit trail)."),
    "404": _problem("No such participant or submission."),
    "409": _problem("Already in that state."),
    **_BODY_PROBLEMS,
}

OPERATIONS.update(
    {
        ("/participants", "post"): {
            "operationId": "register",
            "summary": "Register a participant; the API key is in the answer, once",
            "description": "Open to anyone unless GPUQ_OPEN_REGISTRATION=false; then an admin key is needed.",
            "tags": ["participants"],
            "requestBody": _body("ParticipantIn"),
            "responses": {
                "201": _json("KeyIssued", "Registered."),
                **_BODY_PROBLEMS,
                "401": _problem("Registration is closed and no admin key was sent."),
                "403": _FORBIDDEN,
                "409": _problem("The name is taken (letter case does not matter)."),
                "429": _LIMITED,
                "503": _DATABASE_DOWN,
                "500": _SERVER_ERROR,
            },
        },
        ("/participants/{name}", "get"): {
            "operationId": "getParticipant",
            "summary": "A participant's best score, rank, submission count and history",
            "tags": ["participants"],
            "parameters": [_NAME, *params.HISTORY.openapi()],
            "responses": {
                "200": _json("ParticipantOut", "The participant."),
                "400": _problem("A bad limit or offset."),
                "404": _problem("No such participant."),
                "429": _LIMITED,
                "503": _DATABASE_DOWN,
                "500": _SERVER_ERROR,
            },
        },
        ("/participants/me", "get"): {
            "operationId": "getMe",
            "summary": "The key owner's own page, with the key's prefix",
            "tags": ["participants"],
            "security": _BEARER,
            "parameters": params.HISTORY.openapi(),
            "responses": {
                "200": _json("ParticipantOut", "The participant."),
                "400": _problem("A bad limit or offset."),
                "401": _UNAUTHORIZED,
                "429": _LIMITED,
                "503": _DATABASE_DOWN,
                "500": _SERVER_ERROR,
            },
        },
        ("/participants/me/key", "post"): {
            "operationId": "rotateMyKey",
            "summary": "Rotate one's own API key: a new key (shown once); the old one stops working",
            "tags": ["participants"],
            "security": _BEARER,
            "responses": {
                "200": _json("KeyIssued", "The new key."),
                "401": _UNAUTHORIZED,
                "429": _LIMITED,
                "503": _DATABASE_DOWN,
                "500": _SERVER_ERROR,
            },
        },
        ("/participants/me/key", "delete"): {
            "operationId": "revokeMyKey",
            "summary": "Revoke one's own API key (an admin can issue a new one)",
            "tags": ["participants"],
            "security": _BEARER,
            "responses": {
                "200": _json("KeyRevoked", "Revoked."),
                "401": _UNAUTHORIZED,
                "429": _LIMITED,
                "503": _DATABASE_DOWN,
                "500": _SERVER_ERROR,
            },
        },
        ("/admin/participants", "post"): _admin(
            "adminCreateParticipant",
            "Create a participant (or an admin); the key is in the answer, once",
            {
                "201": _json("KeyIssued", "Created."),
                "409": _problem("The name is taken (letter case does not matter)."),
                **_BODY_PROBLEMS,
            },
            requestBody=_body("AdminParticipantIn"),
        ),
        ("/admin/participants/{name}/key", "post"): _admin(
            "adminRotateKey",
            "Issue a participant a new key; their old one stops working",
            {"200": _json("KeyIssued", "The new key."), "404": _problem("No such participant.")},
            parameters=[_NAME],
        ),
        ("/admin/participants/{name}/key", "delete"): _admin(
            "adminRevokeKey",
            "Revoke a participant's key",
            {"200": _json("KeyRevoked", "Revoked."), "404": _problem("No such participant.")},
            parameters=[_NAME],
        ),
        **{
            (f"/admin/{kind}/{{{key}}}/{action}", "post"): _admin(
                f"admin{action.title()}{noun.title()}",
                f"{action.title()} a {noun}: {effect}",
                _MODERATION,
                parameters=[parameter],
                requestBody=_body("ReasonIn"),
            )
            for kind, key, noun, parameter in (
                ("participants", "name", "participant", _NAME),
                ("submissions", "submission_id", "submission", _SUBMISSION_ID),
            )
            for action, effect in (
                ("disqualify", "out of the leaderboard (kept stored)"),
                ("reinstate", "back on the leaderboard"),
            )
        },
        ("/admin/scoring", "get"): _admin(
            "adminGetScoring",
            "The active scoring profile",
            {"200": _json("ProfileOut", "The active profile.")},
        ),
        ("/admin/scoring", "put"): _admin(
            "adminPutScoring",
            "Change the scoring profile: a new version, every submission rescored",
            {
                "200": _json("ProfileChange", "Applied (or, with dry_run, what applying would do)."),
                "400": _problem("Malformed JSON or a bad dry_run."),
                "413": _problem("The body is too large."),
                "415": _problem("Content-Type is not JSON."),
                "422": _problem("Weights that do not sum to 1, bounds out of order, ..."),
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
            requestBody=_body("ProfileIn"),
        ),
        ("/admin/audit", "get"): _admin(
            "adminAudit",
            "Every admin action, newest first",
            {"200": _json("AuditPage", "One page of the trail."), "400": _problem("A bad limit or offset.")},
            parameters=params.AUDIT.openapi(),
        ),
        ("/admin/export", "get"): _admin(
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
                "400": _problem("A bad format."),
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
    }
)
_SLOT = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_POOL_CHANGED = {"200": _json("PoolChanged", "Done; the pool as it is now (also in the audit trail).")}

OPERATIONS.update(
    {
        ("/slots", "get"): {
            "operationId": "slots",
            "summary": "The slot pool: each slot's state and holder, who is next, where you stand",
            "tags": ["slots"],
            "security": [{}, {"bearer": []}],
            "responses": {
                "200": _json("SlotsOut", "The pool now."),
                "401": _UNAUTHORIZED,
                "429": _LIMITED,
                "503": _DATABASE_DOWN,
                "500": _SERVER_ERROR,
            },
        },
        ("/slots/history", "get"): {
            "operationId": "slotHistory",
            "summary": "Every lease, newest first",
            "tags": ["slots"],
            "parameters": params.HISTORY.openapi(),
            "responses": {
                "200": _json("SlotHistory", "One page of leases."),
                "400": _problem("A bad limit or offset."),
                "429": _LIMITED,
                "503": _DATABASE_DOWN,
                "500": _SERVER_ERROR,
            },
        },
        **{
            (f"/slots/{{name}}/{verb}", "post"): {
                "operationId": f"{verb}Slot",
                "summary": summary,
                "tags": ["slots"],
                "security": _BEARER,
                "parameters": [_SLOT],
                "responses": {
                    "200": _json("SlotAction", "Done."),
                    "401": _UNAUTHORIZED,
                    "404": _problem(
                        "The caller has no such lease on this slot (someone else's looks the same)."
                    ),
                    "409": _problem("Already accepted."),
                    "422": _problem("Not a slot name."),
                    "429": _LIMITED,
                    "503": _DATABASE_DOWN,
                    "500": _SERVER_ERROR,
                },
            }
            for verb, summary in (
                ("accept", "Accept the slot offered to you; the lease starts now"),
                ("release", "Give your slot back (or decline the offer)"),
            )
        },
        ("/admin/slots", "post"): _admin(
            "adminAddSlot",
            "Add a slot to the pool",
            {**_POOL_CHANGED, "409": _problem("Already in the pool."), **_BODY_PROBLEMS},
            requestBody=_body("SlotIn"),
        ),
        ("/admin/slots/{name}", "delete"): _admin(
            "adminRemoveSlot",
            "Remove a free slot from the pool",
            {
                **_POOL_CHANGED,
                "404": _problem("No such slot."),
                "409": _problem("Leased: drain or revoke first."),
            },
            parameters=[_SLOT],
        ),
        ("/admin/slots/{name}/drain", "post"): _admin(
            "adminDrainSlot",
            "No new lease on this slot; the current one runs out",
            {**_POOL_CHANGED, "404": _problem("No such slot.")},
            parameters=[_SLOT],
        ),
        ("/admin/slots/{name}/resume", "post"): _admin(
            "adminResumeSlot",
            "Lease a drained slot again",
            {**_POOL_CHANGED, "404": _problem("No such slot.")},
            parameters=[_SLOT],
        ),
        ("/admin/slots/{name}/revoke", "post"): _admin(
            "adminRevokeSlot",
            "End the slot's live lease now",
            {**_POOL_CHANGED, "404": _problem("No such slot, or no live lease."), **_BODY_PROBLEMS},
            parameters=[_SLOT],
            requestBody=_body("ReasonIn"),
        ),
        ("/admin/slots/size", "put"): _admin(
            "adminResizePool",
            "Resize the pool to gpu-0 .. gpu-(size-1)",
            {**_POOL_CHANGED, **_BODY_PROBLEMS},
            requestBody=_body("PoolSizeIn"),
        ),
        ("/admin/slots/policy", "get"): _admin(
            "adminSlotPolicy", "The slot policy", {"200": _json("SlotPolicyOut", "The policy.")}
        ),
        ("/admin/slots/policy", "put"): _admin(
            "adminPutSlotPolicy",
            "Change the slot policy (running leases keep their expiry)",
            {"200": _json("SlotPolicyOut", "The policy now."), **_BODY_PROBLEMS},
            requestBody=_body("SlotPolicyIn"),
        ),
    }
)

MODELS: list[type[BaseModel]] = [
    schemas.SubmissionIn,
    schemas.SubmissionCreated,
    schemas.SubmissionOut,
    schemas.LeaderboardPage,
    schemas.Health,
    schemas.Problem,
    schemas.Quota,
    schemas.ParticipantIn,
    schemas.AdminParticipantIn,
    schemas.ReasonIn,
    schemas.KeyIssued,
    schemas.ParticipantOut,
    schemas.KeyRevoked,
    schemas.ProfileIn,
    schemas.ProfileOut,
    schemas.ProfileChange,
    schemas.Moderated,
    schemas.AuditPage,
    schemas.SlotsOut,
    schemas.SlotHistory,
    schemas.SlotAction,
    schemas.SlotIn,
    schemas.PoolSizeIn,
    schemas.SlotPolicyIn,
    schemas.SlotPolicyOut,
    schemas.PoolChanged,
]


def build_spec() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a plain dict)."""
    _, definitions = models_json_schema([(model, "validation") for model in MODELS], ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for (path, method), operation in OPERATIONS.items():
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "GPU Qualification Scoring API",
            "version": "1.0.0",
            "description": "Submit GPU benchmark metrics, get a score, watch the leaderboard. "
            "Errors are RFC 9457 problem details.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A participant's API key (gpuq_...), from POST /participants.",
                }
            },
        },
    }


@functools.cache
def spec_body() -> bytes:
    """The document as served (built once per process: it depends on nothing at run time)."""
    return json.dumps(build_spec()).encode()


@bp.get("/openapi.json")
@exempt
def openapi_json() -> Response:
    return Response(spec_body(), mimetype="application/json")


@bp.get("/docs")
@exempt
def docs() -> Response:
    response = Response(render_template("docs.html"), mimetype="text/html")
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


# Scripts and styles only from this service; Swagger UI sets element styles from
# script (allowed) and shows the spec's images as data: URLs.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
