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
from gpuq.api import auth
from gpuq.api import slots as slots_api
from gpuq.api.body import read_json_object
from gpuq.api.schemas import SubmissionIn, validate
from gpuq.clock import iso_z, now
from gpuq.errors import Forbidden, GpuqError, NotFound, Unauthorized, Unavailable
from gpuq.events import EXTENSION as EVENTS
from gpuq.leaderboard import Entry, get_leaderboard
from gpuq.participants import Member
from gpuq.profiles import forget as forget_profile
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
    """Validate, take one from the submission quotas, score, store (commit), then index.

    The 201 is sent only after the commit. Invalid input is refused before the
    quota is touched. A failure after the commit (the index) is logged and
    repaired later; it never turns an acknowledged submission into an error.
    With an Idempotency-Key see gpuq.idempotency for the replay rules; keys
    belong to the participant, or to the address for anonymous submissions.
    """
    address = client_address()
    # Parse once, but answer a replay before anything counts against a quota; a
    # request that is malformed (or carries a bad key) still counts against the daily limit.
    member, key, body = None, None, {}
    try:
        member = auth.caller()
        key = idempotency.check_key(request.headers.get("Idempotency-Key"))
        body = read_json_object(request)
        malformed = None
    except (GpuqError, HTTPException) as exc:
        malformed = exc
    scope = address if member is None else f"participant:{member.id}"
    digest = idempotency.fingerprint(body) if malformed is None and key is not None else None
    if digest is not None:
        with get_db().autocommit() as connection:
            replay = idempotency.find_replay(connection, scope, key, digest, now())
        if replay is not None:  # a retry of a finished request: answered again, using no quota
            return _replayed(replay)
    take_daily(address)
    if malformed is not None:
        raise malformed
    _check_submitter(member)
    metrics = validate(SubmissionIn, body).model_dump()
    if digest is not None:
        return _submit_once(key, digest, metrics, address, member, scope)
    take_submission(address, None if member is None else member.id)
    if member is None:
        # Autocommit: the single INSERT is its own transaction, durable before the 201.
        with get_db().autocommit() as connection:
            submission, profile = _record(connection, metrics, address, member)
    else:
        with get_db().connect() as connection:
            submission, profile = _record(connection, metrics, address, member)
            connection.commit()
    return _created(submission, profile)


def _check_submitter(member: Member | None) -> None:
    if member is None and not current_app.config["GPUQ_SETTINGS"].allow_anonymous:
        raise Unauthorized("anonymous submissions are switched off: send 'Authorization: Bearer <key>'")
    if member is not None and member.disqualified:
        raise Forbidden(f"participant {member.name!r} is disqualified and cannot submit")


def _record(
    connection: Connection, metrics: dict[str, Any], address: str, member: Member | None
) -> tuple[StoredSubmission, Profile]:
    """Score and insert with the active profile, reading it again if an admin just changed it."""
    who = None if member is None else (member.id, member.name)
    for _attempt in range(3):
        profile, version = get_profile()
        try:
            return submissions.record(connection, metrics, profile, version, address, now(), who), profile
        except submissions.ProfileChanged:
            forget_profile()
    raise Unavailable("the scoring profile is being changed; retry", retry_after=1)


def _submit_once(
    key: str, digest: str, metrics: dict[str, Any], address: str, member: Member | None, scope: str
) -> Response:
    database = get_db()
    abandoned_after = dt.timedelta(seconds=current_app.config["GPUQ_SETTINGS"].idempotency_abandon_seconds)
    moment = now()
    with database.autocommit() as connection:
        _purge_expired_keys_hourly(connection, moment)
        replay = idempotency.claim(connection, scope, key, digest, moment, abandoned_after)
    if replay is not None:  # finished between find_replay and here
        return _replayed(replay)
    try:
        take_submission(address, None if member is None else member.id)
        with database.connect() as connection:
            submission, profile = _record(connection, metrics, address, member)
            idempotency.complete(connection, scope, key, submission.id)
            connection.commit()
    except BaseException:
        with suppress(Exception), database.autocommit() as connection:
            idempotency.release(connection, scope, key)
        raise
    response = _created(submission, profile)
    try:
        with database.autocommit() as connection:
            idempotency.attach_response(connection, scope, key, response.get_data(as_text=True))
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
    rank = None
    if submission.ranked:
        rank = board.add(item) or _safe_rank(item)
    if announce:
        size = current_app.config["GPUQ_SETTINGS"].board_size
        live.announce(current_app.extensions[EVENTS], board, item, rank, size, submission.leads)
        if submission.participant is not None and submission.leads:
            slots_api.settle(expire=False)  # a new best may make them eligible for a free slot
    response = jsonify(
        {
            "success": True,
            "score": number(submission.score),
            "submission_id": submission.id,
            "rank": rank,
            "participant": submission.participant,
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
        earlier = submissions.earlier_scores(connection, submission_id)
    profile, version = get_profile()
    same_profile = submission.profile_version == version
    return jsonify(
        {
            "submission_id": submission.id,
            "score": number(submission.score),
            "rank": get_leaderboard().rank(Entry.of(submission)) if submission.ranked else None,
            "participant": submission.participant,
            "status": submission.status,
            "profile_version": submission.profile_version,
            "submitted_at": iso_z(submission.created_at),
            "breakdown": breakdown(submission, profile if same_profile else None),
            "earlier_scores": [{"profile_version": v, "score": number(score)} for v, score in earlier],
        }
    )
