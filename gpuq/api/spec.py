"""Building blocks of the OpenAPI document that the resource modules share: problem and
JSON responses, common parameters, the admin operation shape.

Each resource module declares its operations beside its routes (`OPERATIONS`);
gpuq.api.openapi assembles them with the schemas into the document.
"""

from __future__ import annotations

from typing import Any

from gpuq.store.models import MAX_SUBMISSION_ID

Operations = dict[tuple[str, str], dict[str, Any]]
"""(path, method) -> the OpenAPI operation object."""

PROBLEM = "application/problem+json"
REF = "#/components/schemas/{model}"

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Makes a retry safe: the same key and body within 24 h return the first response "
    "(with `Idempotent-Replayed: true`) instead of storing again.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"},
}
RATE_HEADERS = {
    "X-RateLimit-Limit": {"schema": {"type": "integer"}, "description": "The limit being reported."},
    "X-RateLimit-Remaining": {"schema": {"type": "integer"}, "description": "What remains of it."},
    "X-RateLimit-Reset": {"schema": {"type": "integer"}, "description": "Epoch second when a unit frees up."},
}


def problem(description: str, **headers: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM: {"schema": {"$ref": REF.format(model="Problem")}}},
    }
    if headers:
        response["headers"] = {
            name: {"schema": {"type": "integer"}, "description": text} for name, text in headers.items()
        }
    return response


def json_response(model: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}},
    }
    if headers:
        response["headers"] = headers
    return response


LIMITED = problem("A rate limit is used up.", **{"Retry-After": "Seconds to wait."})
DATABASE_DOWN = problem(
    "The database is unavailable; nothing was stored.", **{"Retry-After": "Seconds to wait."}
)
SERVER_ERROR = problem("An unexpected error (a bug).")
MISPLACED_KEY = problem(
    "An API key sent another way than `Authorization: Bearer <key>` (a header or the query)."
)

VIEW = {
    "name": "view",
    "in": "query",
    "required": False,
    "description": "best: each participant once (their best; anonymous submissions each stand alone); "
    "all: every submission.",
    "schema": {"type": "string", "enum": ["best", "all"], "default": "best"},
}
UNAUTHORIZED = problem("No API key, or one that is unknown, revoked or malformed.")
FORBIDDEN = problem("The key is valid but not an admin's.")
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]

NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
SUBMISSION_ID = {
    "name": "submission_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_SUBMISSION_ID},
}


def body(model: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}}}


def admin(operation_id: str, summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An admin operation: every one answers 401 without a key and 403 with a participant's."""
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["admin"],
        "security": BEARER,
        **extra,
        "responses": {
            **responses,
            "401": UNAUTHORIZED,
            "403": FORBIDDEN,
            "503": DATABASE_DOWN,
            "500": SERVER_ERROR,
        },
    }


BODY_PROBLEMS = {
    "400": problem("Malformed JSON."),
    "413": problem("The body is too large."),
    "415": problem("Content-Type is not JSON."),
    "422": problem("The body breaks the input rules (`errors` names each field)."),
}
MODERATION = {
    "200": json_response("Moderated", "Done; the state before and after (also in the audit trail)."),
    "404": problem("No such participant or submission."),
    "409": problem("Already in that state."),
    **BODY_PROBLEMS,
}

SLOT = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
POOL_CHANGED = {"200": json_response("PoolChanged", "Done; the pool as it is now (also in the audit trail).")}
