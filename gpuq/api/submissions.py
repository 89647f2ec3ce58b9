"""POST /submit_qualification and GET /submissions/<id> (the use case: gpuq.submissions.service)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from gpuq.api import auth, spec
from gpuq.api.body import read_json_object
from gpuq.api.context import runtime
from gpuq.api.limits import client_address, report
from gpuq.api.receipts import created
from gpuq.api.schemas import SubmissionIn, validate
from gpuq.errors import GpuqError
from gpuq.submissions import idempotency
from gpuq.submissions.service import scope_of

bp = Blueprint("submissions", __name__)


@bp.post("/submit_qualification")
def submit_qualification() -> Response:
    """Validate, then hand over to SubmissionService.submit; the 201 follows the commit.

    Parse once, but answer a replay of a finished idempotent request before
    anything counts against a quota; a request that is malformed (or carries a
    bad key) still counts against the daily limit. Invalid input is refused
    before the submission quotas are touched.
    """
    service = runtime().submissions
    address = client_address()
    member, key, body = None, None, {}
    try:
        member = auth.caller()
        key = idempotency.check_key(request.headers.get("Idempotency-Key"))
        body = read_json_object(request)
        malformed = None
    except (GpuqError, HTTPException) as exc:
        malformed = exc
    digest = idempotency.fingerprint(body) if malformed is None and key is not None else None
    if key is not None and digest is not None:
        replay = service.find_replay(scope_of(address, member), key, digest)
        if replay is not None:  # a retry of a finished request: answered again, using no quota
            return created(replay)
    runtime().limits.take_daily(address, None if member is None else member.id, report=False)
    if malformed is not None:
        raise malformed
    service.check_submitter(member)
    metrics = validate(SubmissionIn, body).model_dump()
    idempotent = None if key is None or digest is None else (key, digest)
    return created(service.submit(metrics, address, member, idempotent, on_usage=report))


@bp.get("/submissions/<int:submission_id>")
def get_submission(submission_id: int) -> Response:
    return jsonify(runtime().submissions.detail(submission_id))


# Its routes in the OpenAPI document (gpuq.api.openapi assembles every module's).
OPERATIONS: spec.Operations = {
    ("/submit_qualification", "post"): {
        "operationId": "submitQualification",
        "summary": "Submit the five benchmark metrics; get the score and rank",
        "tags": ["submissions"],
        "security": [{}, {"bearer": []}],
        "parameters": [spec.IDEMPOTENCY_KEY],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": spec.REF.format(model="SubmissionIn")}}},
        },
        "responses": {
            "201": {
                **spec.json_response(
                    "SubmissionCreated",
                    "Scored and stored (committed before this answer).",
                    {
                        "Location": {"schema": {"type": "string"}, "description": "The submission's URL."},
                        **spec.RATE_HEADERS,
                    },
                ),
                "links": {
                    "GetSubmission": {
                        "operationId": "getSubmission",
                        "parameters": {"submission_id": "$response.body#/submission_id"},
                    }
                },
            },
            "400": spec.problem(
                "Malformed: not JSON, NaN/Infinity, duplicate keys, too deep, a bad Idempotency-Key."
            ),
            "401": spec.problem("A bad API key, or none while anonymous submissions are switched off."),
            "403": spec.problem("The participant is disqualified."),
            "409": spec.problem(
                "A request with this Idempotency-Key claimed by an earlier version is still in flight."
            ),
            "413": spec.problem("The body is too large."),
            "415": spec.problem("Content-Type is not JSON."),
            "422": spec.problem(
                "The body breaks the input rules (`errors` names each field), or the "
                "Idempotency-Key was used with a different body."
            ),
            "429": spec.LIMITED,
            "503": spec.DATABASE_DOWN,
            "500": spec.SERVER_ERROR,
        },
    },
    ("/submissions/{submission_id}", "get"): {
        "operationId": "getSubmission",
        "summary": "One stored submission with its breakdown and current rank",
        "tags": ["submissions"],
        "parameters": [spec.SUBMISSION_ID],
        "responses": {
            "200": spec.json_response("SubmissionOut", "The submission.", spec.RATE_HEADERS),
            "404": spec.problem("No such submission."),
            "429": spec.LIMITED,
            "503": spec.DATABASE_DOWN,
            "500": spec.SERVER_ERROR,
        },
    },
}
