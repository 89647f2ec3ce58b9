"""POST /submit_qualification and GET /submissions/<id>."""

from __future__ import annotations

import datetime as dt
import logging
from contextlib import suppress
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from sqlalchemy import Connection
from werkzeug.exceptions import HTTPException

from gpuq import idempotency, live, submissions
from gpuq.api.body import read_json_object
from gpuq.api.schemas import SubmissionIn, validate
from gpuq.clock import iso_z, now
from gpuq.errors import GpuqError, NotFound
from gpuq.events import EXTENSION as EVENTS
from gpuq.leaderboard import Entry, get_leaderboard
from gpuq.profiles import get_profile
from gpuq.ratelimit import client_address, take_daily, take_submission
from gpuq.scoring import Profile
from gpuq.serialize import breakdown, number
from gpuq.store.db import get_db
from gpuq.store.models import MAX_SUBMISSION_ID
from gpuq.submissions import StoredSubmission

bp = Blueprint("submissions", __name__)
log = logging.getLogger(__name__)

PURGE_DUE = "gpuq.idempotency_purge_due"


@bp.post("/submit_qualification")
def submit_qualification():
    """Validate, take one from the submission quota, score, store (commit), then index.

    The 201 is sent only after the commit. Invalid input is refused before the
    quota is touched. A failure after the commit (the index) is logged and
    repaired later; it never turns an acknowledged submission into an error.
    With an Idempotency-Key see gpuq.idempotency for the replay rules.
    """
    address = client_address()
    # Parse once, but answer a replay before anything counts against a quota;
    # a request that is malformed still counts against the daily limit.
    try:
        key = idempotency.check_key(request.headers.get("Idempotency-Key"))
        body = read_json_object(request)
        malformed = None
    except (GpuqError, HTTPException) as exc:
        malformed = exc
    digest = idempotency.fingerprint(body) if malformed is None and key is not None else None
    if digest is not None:
        with get_db().autocommit() as connection:
            replay = idempotency.find_replay(connection, address, key, digest, now())
        if replay is not None:  # a retry of a finished request: answered again, using no quota
            return _replayed(replay)
    take_daily(address)
    if malformed is not None:
        raise malformed
    metrics = validate(SubmissionIn, body).model_dump()
    if digest is not None:
        return _submit_once(key, digest, metrics, address)
    take_submission(address)
    profile, version = get_profile()
    # Autocommit: the single INSERT is its own transaction, durable before the 201.
    with get_db().autocommit() as connection:
        submission = submissions.record(connection, metrics, profile, version, address, now())
    return _created(submission, profile)


def _submit_once(key: str, digest: str, metrics: dict[str, Any], address: str) -> Response:
    database = get_db()
    abandoned_after = dt.timedelta(seconds=current_app.config["GPUQ_SETTINGS"].idempotency_abandon_seconds)
    moment = now()
    with database.autocommit() as connection:
        _purge_expired_keys_hourly(connection, moment)
        replay = idempotency.claim(connection, address, key, digest, moment, abandoned_after)
    if replay is not None:  # finished between find_replay and here
        return _replayed(replay)
    try:
        take_submission(address)
        profile, version = get_profile()
        with database.connect() as connection:
            submission = submissions.record(connection, metrics, profile, version, address, now())
            idempotency.complete(connection, address, key, submission.id)
            connection.commit()
    except BaseException:
        with suppress(Exception), database.autocommit() as connection:
            idempotency.release(connection, address, key)
        raise
    response = _created(submission, profile)
    try:
        with database.autocommit() as connection:
            idempotency.attach_response(connection, address, key, response.get_data(as_text=True))
    except Exception:  # a replay then rebuilds the body from the stored submission
        log.exception("could not keep the response of an idempotent submission")
    return response


def _purge_expired_keys_hourly(connection: Connection, moment: dt.datetime) -> None:
    """Expired keys are ignored by `claim`; this keeps the table from growing (once an hour per worker)."""
    due = current_app.extensions.get(PURGE_DUE)
    if due is None or moment >= due:
        current_app.extensions[PURGE_DUE] = moment + dt.timedelta(hours=1)
        idempotency.purge_expired(connection, moment)


def _replayed(replay: idempotency.Replay) -> Response:
    if replay.response_body is not None:
        response = Response(replay.response_body, status=201, mimetype="application/json")
        response.headers["Location"] = _location(replay.submission_id)
    else:
        with get_db().autocommit() as connection:
            submission = submissions.get(connection, replay.submission_id)
        profile, version = get_profile()
        same_profile = submission.profile_version == version
        response = _created(submission, profile if same_profile else None, announce=False)
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _created(submission: StoredSubmission, profile: Profile | None, announce: bool = True) -> Response:
    item = Entry.of(submission)
    board = get_leaderboard()
    rank = board.add(item) or _safe_rank(item)
    if announce:
        size = current_app.config["GPUQ_SETTINGS"].board_size
        live.announce(current_app.extensions[EVENTS], board, item, rank, size)
    response = jsonify(
        {
            "success": True,
            "score": number(submission.score),
            "submission_id": submission.id,
            "rank": rank,
            "breakdown": breakdown(submission, profile),
        }
    )
    response.status_code = 201
    response.headers["Location"] = _location(submission.id)
    return response


def _location(submission_id: int) -> str:
    return url_for("submissions.get_submission", submission_id=submission_id)


def _safe_rank(item: Entry) -> int | None:
    # The submission is committed: a failing rank look-up must not turn the 201 into an error.
    try:
        return get_leaderboard().rank(item)
    except Exception:
        current_app.logger.exception("rank look-up failed after commit")
        return None


@bp.get("/submissions/<int:submission_id>")
def get_submission(submission_id: int):
    if submission_id > MAX_SUBMISSION_ID:  # beyond BIGINT: cannot exist
        raise NotFound(f"no submission with id {submission_id}")
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
