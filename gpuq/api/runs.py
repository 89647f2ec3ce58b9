"""Measured results over HTTP (the use case: gpuq.submissions.service; the rules: gpuq.evidence).

POST /runs                          a single-use run ticket for the caller (an API key is needed)
POST /runs/<ticket_id>/evidence     the run's evidence: the server derives the metrics, checks, scores
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, url_for
from werkzeug.exceptions import HTTPException

from gpuq.api import auth, spec
from gpuq.api.body import read_json_object
from gpuq.api.context import runtime
from gpuq.api.limits import client_address, report
from gpuq.api.receipts import created
from gpuq.api.schemas import EvidenceIn, validate
from gpuq.errors import GpuqError
from gpuq.submissions import idempotency
from gpuq.submissions.service import scope_of

bp = Blueprint("runs", __name__)


@bp.post("/runs")
def issue_ticket() -> Response:
    issued = runtime().submissions.issue_ticket(auth.require_participant())
    response = jsonify(
        issued.to_json() | {"evidence_url": url_for("runs.submit_evidence", ticket_id=issued.ticket_id)}
    )
    response.status_code = 201
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/runs/<ticket_id>/evidence")
def submit_evidence(ticket_id: str) -> Response:
    """In the order of POST /submit_qualification (a replay first, then the daily limit, then
    validation), with a body limit of its own: a run's samples are larger than five numbers."""
    service = runtime().submissions
    address = client_address()
    request.max_content_length = runtime().settings.max_evidence_bytes
    member, key, body = None, None, {}
    try:
        member = auth.require_participant()
        key = idempotency.check_key(request.headers.get("Idempotency-Key"))
        body = read_json_object(request)
        malformed = None
    except (GpuqError, HTTPException) as exc:
        malformed = exc
    digest = idempotency.fingerprint(body) if malformed is None and key is not None else None
    if member is not None and key is not None and digest is not None:
        replay = service.find_replay(scope_of(address, member), key, digest)
        if replay is not None:  # a retry of a finished request: answered again, using no quota
            return created(replay)
    runtime().limits.take_daily(address, None if member is None else member.id, report=False)
    if malformed is not None:
        raise malformed
    assert member is not None
    service.check_submitter(member)
    evidence = validate(EvidenceIn, body).to_evidence(ticket_id)
    idempotent = None if key is None or digest is None else (key, digest)
    return created(service.submit_measured(evidence, address, member, idempotent, on_usage=report))


_TICKET_REFUSED = {
    "403": spec.problem("`ticket_not_yours`, or the participant is disqualified (`code` says which)."),
    "404": spec.problem("`ticket_unknown`: no such ticket."),
    "409": spec.problem(
        "`ticket_used` or `evidence_replayed`; or an Idempotency-Key of an earlier version in flight."
    ),
    "410": spec.problem("`ticket_expired`."),
}

# Its routes in the OpenAPI document (gpuq.api.openapi assembles every module's).
OPERATIONS: spec.Operations = {
    ("/runs", "post"): {
        "operationId": "issueRunTicket",
        "summary": "A single-use ticket for one measured run (its id, nonce, seed and lifetime)",
        "tags": ["measured results"],
        "security": spec.BEARER,
        "responses": {
            "201": spec.json_response("TicketIssued", "Issued (use it within its lifetime, once)."),
            "401": spec.UNAUTHORIZED,
            "403": spec.problem("The participant is disqualified."),
            "429": spec.LIMITED,
            "503": spec.DATABASE_DOWN,
            "500": spec.SERVER_ERROR,
        },
    },
    ("/runs/{ticket_id}/evidence", "post"): {
        "operationId": "submitEvidence",
        "summary": "The evidence of a run: the server derives the five metrics, checks and scores them",
        "tags": ["measured results"],
        "security": spec.BEARER,
        "parameters": [
            {"name": "ticket_id", "in": "path", "required": True, "schema": {"type": "string"}},
            spec.IDEMPOTENCY_KEY,
        ],
        "requestBody": spec.body("EvidenceIn"),
        "responses": {
            "201": spec.json_response(
                "SubmissionCreated",
                "Stored (ranked unless a check failed: `checks` and `withheld` say).",
                {"Location": {"schema": {"type": "string"}}, **spec.RATE_HEADERS},
            ),
            **spec.BODY_PROBLEMS,
            "401": spec.UNAUTHORIZED,
            **_TICKET_REFUSED,
            "422": spec.problem(
                "The body breaks the input rules (`errors`), `ticket_nonce_mismatch` or "
                "`measurement_missing` (`code`), or the Idempotency-Key was used with another body."
            ),
            "429": spec.LIMITED,
            "503": spec.DATABASE_DOWN,
            "500": spec.SERVER_ERROR,
        },
    },
}
