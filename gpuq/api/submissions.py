"""POST /submit_qualification and GET /submissions/<id> (the use case: gpuq.submissions.service)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from gpuq.api import auth, spec
from gpuq.api.context import runtime
from gpuq.api.limits import report
from gpuq.api.receipts import created, take_in
from gpuq.api.schemas import SubmissionIn, validate

bp = Blueprint("submissions", __name__)


@bp.post("/submit_qualification")
def submit_qualification() -> Response:
    """Read (gpuq.api.receipts.take_in), validate, then hand over to SubmissionService.submit;
    the 201 follows the commit. Invalid input is refused before the submission quotas are
    touched."""
    intake = take_in(auth.caller)
    if isinstance(intake, Response):
        return intake
    body = validate(SubmissionIn, intake.body)
    receipt = runtime().submissions.submit(
        body.model_dump(exclude={"gpu_model"}),
        intake.address,
        intake.member,
        intake.idempotent,
        on_usage=report,
        declared_gpu=body.gpu_model,
    )
    return created(receipt)


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
