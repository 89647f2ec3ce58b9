"""Every error leaves the API as `application/problem+json` (RFC 9457), from here.

Body: `type` (always "about:blank": the status says what kind of problem it
is), `title` (the status phrase), `status`, `detail` (what went wrong, for a
person), `instance` (the request path), `request_id` (the request's id, as in
the `X-Request-ID` header and the log lines: gpuq.api.observe) and, for invalid
input, `errors`: a list of `{"field", "message"}`. No stack trace or server
detail ever leaves.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, g, json, request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from gpuq import metrics
from gpuq.api.observe import request_id
from gpuq.errors import (
    Conflict,
    EvidenceRefused,
    Forbidden,
    GpuqError,
    InvalidInput,
    NotFound,
    RateLimited,
    Refused,
    Unauthorized,
    Unavailable,
)
from gpuq.store.db import is_no_answer, is_read_only, is_unavailable
from gpuq.submissions import idempotency

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
DATABASE_RETRY_AFTER = 5


def problem(status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    """Build a problem+json response."""
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.path,
        "request_id": request_id(),
        **extra,
    }
    response = Response(json.dumps(body, separators=(",", ":")), status=status, mimetype=PROBLEM_JSON)
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _http_error(exc: HTTPException) -> Response:
    if isinstance(exc, RequestEntityTooLarge):
        return problem(
            413, f"the request body is larger than the limit of {request.max_content_length} bytes"
        )
    headers = {name: value for name, value in exc.get_headers() if name == "Allow"}
    return problem(exc.code or 500, exc.description or HTTPStatus(exc.code or 500).phrase, headers)


_REFUSED = {NotFound: 404, Forbidden: 403, Conflict: 409}


def _domain_error(exc: GpuqError) -> Response:
    if isinstance(exc, InvalidInput):
        errors = [{"field": e.field, "message": e.message} for e in exc.errors]
        return problem(exc.status, exc.detail, errors=errors) if errors else problem(exc.status, exc.detail)
    if isinstance(exc, Unauthorized):
        return problem(401, exc.detail, {"WWW-Authenticate": 'Bearer realm="gpuq"'})
    if isinstance(exc, Refused):
        return problem(_REFUSED[type(exc)], exc.detail)
    if isinstance(exc, RateLimited):
        # X-RateLimit-* and Retry-After are added by gpuq.ratelimit.add_headers.
        g.gpuq_rate_usage = exc.usage
        metrics.rate_limited(exc.scope)
        return problem(429, f"{exc.description} exceeded; retry in {exc.usage.retry_after} s")
    if isinstance(exc, idempotency.InFlight):
        return problem(409, str(exc), {"Retry-After": "1"})
    if isinstance(exc, idempotency.Mismatch):
        return problem(422, str(exc), errors=[{"field": "Idempotency-Key", "message": str(exc)}])
    if isinstance(exc, Unavailable):
        return problem(503, exc.detail, {"Retry-After": str(exc.retry_after)})
    if isinstance(exc, EvidenceRefused):
        return problem(exc.status, exc.detail, code=exc.code)
    return _unexpected(exc)


def _database_error(exc: Exception) -> Response:
    if is_read_only(exc):
        log.warning("database refused a write: it is read-only")
        return problem(
            503,
            "the database is read-only just now (a fail-over may be under way); nothing was stored, "
            "retry later",
            {"Retry-After": str(DATABASE_RETRY_AFTER)},
        )
    if is_no_answer(exc):
        log.warning("database did not answer in time")
        return problem(
            503,
            "the database did not answer in time; what was sent may still be stored: retry with the "
            "same Idempotency-Key to be sure of storing it once",
            {"Retry-After": str(DATABASE_RETRY_AFTER)},
        )
    if is_unavailable(exc):
        log.warning("database unavailable: %s", type(exc).__name__)
        return problem(
            503,
            "the database is unavailable; nothing was stored, retry later",
            {"Retry-After": str(DATABASE_RETRY_AFTER)},
        )
    return _unexpected(exc)


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "an unexpected error occurred; it has been logged")


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(GpuqError, _domain_error)
    app.register_error_handler(DBAPIError, _database_error)
    app.register_error_handler(PoolTimeout, _database_error)
    app.register_error_handler(Exception, _unexpected)
