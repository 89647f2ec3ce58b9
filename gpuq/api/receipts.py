"""The 201 of an accepted submission, for every route that submits (shared HTTP helper)."""

from __future__ import annotations

from flask import Response, url_for

from gpuq.submissions.service import Receipt


def created(receipt: Receipt) -> Response:
    """The receipt's rendered body with its Location, marked when it replays a first answer."""
    response = Response(receipt.body, status=201, mimetype="application/json")
    response.headers["Location"] = url_for("submissions.get_submission", submission_id=receipt.submission_id)
    if receipt.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response
