"""The OpenAPI 3.1 document, built from the same Pydantic models that validate
requests (and describe responses), served at /openapi.json; Swagger UI at /docs.

Each resource module declares its operations beside its routes (`OPERATIONS`, built
from the blocks in gpuq.api.spec); this module only assembles them with the schemas,
and declares its own two routes and the page at /board (gpuq/web stays free of API
imports).
"""

from __future__ import annotations

import functools
from typing import Any

from flask import Blueprint, Response, json, render_template
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gpuq.api import (
    admin,
    health,
    leaderboard,
    observe,
    participants,
    quota,
    runs,
    schemas,
    slots,
    spec,
    stream,
    submissions,
)
from gpuq.api.limits import exempt

bp = Blueprint("openapi", __name__)

# Its routes in the OpenAPI document (gpuq.api.openapi assembles every module's).
_OWN: spec.Operations = {
    ("/board", "get"): {
        "operationId": "board",
        "summary": "The live board page (for people and big screens)",
        "tags": ["leaderboard"],
        "responses": {
            "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}
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

OPERATIONS: spec.Operations = {
    **health.OPERATIONS,
    **submissions.OPERATIONS,
    **runs.OPERATIONS,
    **leaderboard.OPERATIONS,
    **stream.OPERATIONS,
    **quota.OPERATIONS,
    **_OWN,
    **participants.OPERATIONS,
    **admin.OPERATIONS,
    **slots.OPERATIONS,
    **observe.OPERATIONS,
}
"""Every route's operation, as each resource module declares it (a test checks none is missing)."""


MODELS: list[type[BaseModel]] = [
    schemas.SubmissionIn,
    schemas.EvidenceIn,
    schemas.TicketIssued,
    schemas.SubmissionCreated,
    schemas.SubmissionOut,
    schemas.LeaderboardPage,
    schemas.GpuModels,
    schemas.Health,
    schemas.Probe,
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
    schemas.SlotModelIn,
    schemas.PoolSizeIn,
    schemas.SlotPolicyIn,
    schemas.SlotPolicyOut,
    schemas.ResultPolicyIn,
    schemas.ResultPolicyOut,
    schemas.PoolChanged,
]


def build_spec() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a plain dict)."""
    _, definitions = models_json_schema([(model, "validation") for model in MODELS], ref_template=spec.REF)
    paths: dict[str, dict[str, Any]] = {}
    for (path, method), operation in OPERATIONS.items():
        # Any request may send its key the wrong way (gpuq.api.auth.refuse_misplaced_keys).
        responses = {"400": spec.MISPLACED_KEY, **operation["responses"]}
        paths.setdefault(path, {})[method] = {**operation, "responses": responses}
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
