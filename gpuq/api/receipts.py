"""What every submitting route shares (POST /submit_qualification, POST /runs/<id>/evidence):
reading the request in the order the limits need, and the 201 of an accepted submission."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from flask import Response, request, url_for
from werkzeug.exceptions import HTTPException

from gpuq.api.body import read_json_object
from gpuq.api.context import runtime
from gpuq.api.limits import client_address
from gpuq.errors import GpuqError
from gpuq.participants import Member
from gpuq.submissions import idempotency
from gpuq.submissions.service import Receipt, scope_of


@dataclasses.dataclass(frozen=True)
class Intake:
    address: str
    member: Member | None
    body: dict[str, Any]
    idempotent: tuple[str, str] | None
    """(Idempotency-Key, body fingerprint) when the client sent a key."""


def take_in(who: Callable[[], Member | None]) -> Intake | Response:
    """Read a submitting request: the caller (`who`, e.g. auth.caller), the Idempotency-Key
    and the JSON body, parsed once.

    A replay of a finished idempotent request is answered (the returned Response) before
    anything counts against a quota; otherwise the request counts against the daily
    limit, even when it is malformed or carries a bad key, and then a malformed one is
    refused. Validation and the submission quotas are the caller's next steps.
    """
    address = client_address()
    member, key, body = None, None, {}
    try:
        member = who()
        key = idempotency.check_key(request.headers.get("Idempotency-Key"))
        body = read_json_object(request)
        malformed = None
    except (GpuqError, HTTPException) as exc:
        malformed = exc
    digest = idempotency.fingerprint(body) if malformed is None and key is not None else None
    if key is not None and digest is not None:
        replay = runtime().submissions.find_replay(scope_of(address, member), key, digest)
        if replay is not None:  # a retry of a finished request: answered again, using no quota
            return created(replay)
    runtime().limits.take_daily(address, None if member is None else member.id, report=False)
    if malformed is not None:
        raise malformed
    runtime().submissions.check_submitter(member)
    return Intake(address, member, body, None if key is None or digest is None else (key, digest))


def created(receipt: Receipt) -> Response:
    """The receipt's rendered body with its Location, marked when it replays a first answer."""
    response = Response(receipt.body, status=201, mimetype="application/json")
    response.headers["Location"] = url_for("submissions.get_submission", submission_id=receipt.submission_id)
    if receipt.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response
