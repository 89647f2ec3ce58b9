"""POST /submit_qualification and GET /submissions/<id>."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request, url_for

from gpuq import submissions
from gpuq.api.body import read_json_object
from gpuq.api.schemas import SubmissionIn, validate
from gpuq.api.serialize import breakdown, number
from gpuq.clock import iso_z, now
from gpuq.leaderboard import Entry, get_leaderboard
from gpuq.profiles import get_profile
from gpuq.ratelimit import client_address, take_submission
from gpuq.store.db import get_db

bp = Blueprint("submissions", __name__)


@bp.post("/submit_qualification")
def submit_qualification():
    """Validate, take one from the submission quota, score, store (commit), then index.

    The 201 is sent only after the commit. Invalid input is refused before
    the quota is touched. A failure after the commit (the index) is logged and
    repaired later; it never turns an acknowledged submission into an error.
    """
    metrics = validate(SubmissionIn, read_json_object(request))
    address = client_address()
    take_submission(address)
    profile, version = get_profile()
    # Autocommit: the single INSERT is its own transaction, durable before the 201.
    with get_db().autocommit() as connection:
        submission = submissions.record(connection, metrics.model_dump(), profile, version, address, now())
    board = get_leaderboard()
    item = Entry.of(submission)
    rank = board.add(item) or _safe_rank(item)
    body = {
        "success": True,
        "score": number(submission.score),
        "submission_id": submission.id,
        "rank": rank,
        "breakdown": breakdown(submission, profile),
    }
    response = jsonify(body)
    response.status_code = 201
    response.headers["Location"] = url_for("submissions.get_submission", submission_id=submission.id)
    return response


def _safe_rank(item: Entry) -> int | None:
    # The submission is committed: a failing rank look-up must not turn the 201 into an error.
    try:
        return get_leaderboard().rank(item)
    except Exception:
        current_app.logger.exception("rank look-up failed after commit")
        return None


@bp.get("/submissions/<int:submission_id>")
def get_submission(submission_id: int):
    with get_db().autocommit() as connection:
        submission = submissions.get(connection, submission_id)
    profile, version = get_profile()
    same_profile = submission.profile_version == version
    return jsonify(
        {
            "submission_id": submission.id,
            "score": number(submission.score),
            "rank": get_leaderboard().rank(Entry.of(submission)),
            "profile_version": submission.profile_version,
            "submitted_at": iso_z(submission.created_at),
            "breakdown": breakdown(submission, profile if same_profile else None),
        }
    )
