"""The OpenAPI 3.1 document, built from the same Pydantic models that validate
requests (and describe responses), served at /openapi.json; Swagger UI at /docs.

Every route is listed in OPERATIONS; a test checks that no route is missing.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, json, render_template
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gpuq import ratelimit
from gpuq.api import schemas
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
        "summary": "Ranked submissions: score descending, ties to the earlier submission",
        "tags": ["leaderboard"],
        "parameters": [
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
            },
            {
                "name": "offset",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 0, "maximum": 1_000_000, "default": 0},
            },
        ],
        "responses": {
            "200": _json("LeaderboardPage", "One page of the board."),
            "400": _problem("A bad limit or offset."),
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
        "responses": {
            "200": _json("Quota", "The caller's quota (reading it uses none)."),
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

MODELS: list[type[BaseModel]] = [
    schemas.SubmissionIn,
    schemas.SubmissionCreated,
    schemas.SubmissionOut,
    schemas.LeaderboardPage,
    schemas.Health,
    schemas.Problem,
    schemas.Quota,
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
        "components": {"schemas": definitions.get("$defs", {})},
    }


@bp.get("/openapi.json")
@ratelimit.exempt
def openapi_json():
    body = current_app.extensions.get("gpuq.openapi")
    if body is None:
        body = current_app.extensions["gpuq.openapi"] = json.dumps(build_spec()).encode()
    return Response(body, mimetype="application/json")


@bp.get("/docs")
@ratelimit.exempt
def docs():
    response = Response(render_template("docs.html"), mimetype="text/html")
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


# Scripts and styles only from this service; Swagger UI sets element styles from
# script (allowed) and shows the spec's images as data: URLs.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
