"""Measured results over HTTP (the use case: gpuq.submissions.service; the rules: gpuq.evidence).

POST /runs                          a single-use run ticket for the caller (an API key is needed)
POST /runs/<ticket_id>/evidence     the run's evidence: the server derives the metrics, checks, scores
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, url_for

from gpuq.api import auth, spec
from gpuq.api.context import runtime
from gpuq.api.limits import client_address, report
from gpuq.api.receipts import created, take_in
from gpuq.api.schemas import EvidenceIn, validate

bp = Blueprint("runs", __name__)


@bp.post("/runs")
def issue_ticket() -> Response:
    issued = runtime().submissions.issue_ticket(auth.require_participant(), client_address())
    response = jsonify(
        issued.to_json() | {"evidence_url": url_for("runs.submit_evidence", ticket_id=issued.ticket_id)}
    )
    response.status_code = 201
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/runs/<ticket_id>/evidence")
def submit_evidence(ticket_id: str) -> Response:
    """As POST /submit_qualification (gpuq.api.receipts.take_in), with a key required and a
    body limit of its own: a run's samples are larger than five numbers."""
    request.max_content_length = runtime().settings.max_evidence_bytes
    intake = take_in(auth.require_participant)
    if isinstance(intake, Response):
        return intake
    assert intake.member is not None
    evidence = validate(EvidenceIn, intake.body).to_evidence(ticket_id)
    receipt = runtime().submissions.submit_measured(
        evidence, intake.address, intake.member, intake.idempotent, on_usage=report
    )
    return created(receipt)


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
