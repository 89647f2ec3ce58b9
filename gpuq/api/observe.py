"""What operators see of each request, from one hook, and GET /metrics.

The hook (`init_app`, installed before every other request hook so that it sees
every request, also those refused by the key checks and the limits):

* **request id**: the client's `X-Request-ID` when it is sane (1-128 printable ASCII
  characters, no spaces), else a new random one (32 hex digits); echoed in the
  response's `X-Request-ID`, in every problem+json body (`request_id`, see
  gpuq.api.errors) and in every log line written while the request is answered;
* **one access log line** per request (logger `gpuq.access`): method, route (the
  URL rule), path (never the query string, which may hold a misplaced key),
  status, duration_ms, address, participant (the caller's name when the request
  was authenticated, else null), request_id; never a header;
* **request metrics** (gpuq.metrics): requests by route, method and status; the
  latency histogram, except for streamed responses (the live stream, the
  export, files), whose time to the first byte says nothing of their length;
  refused submissions by reason, read from the status (refusals come from every
  layer, parsing, keys, validation, limits, the database, and meet only there).

GET /metrics: the Prometheus text format (gpuq.metrics.exposition). Access: with
GPUQ_METRICS_TOKEN set, only `Authorization: Bearer <token>` (401 otherwise); without
it, only clients on a loopback address (403 otherwise). Outside the rate limits (a
scraper calls every few seconds, all day).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
import time

from flask import Blueprint, Flask, Request, Response, g, request

from gpuq import build, logs, metrics
from gpuq.api import auth, spec
from gpuq.api.context import runtime
from gpuq.api.limits import client_address, exempt
from gpuq.errors import Forbidden, Unauthorized

bp = Blueprint("observe", __name__)

REQUEST_ID_HEADER = "X-Request-ID"
SANE_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
"""A client's request id is kept when it is 1-128 printable ASCII characters without spaces."""
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods named as sent; any other is named "other" (so metric labels stay a fixed set)."""
UNMATCHED = "unmatched"
"""The route of a request that matched none (404, 405)."""

SUBMIT_ENDPOINT = "submissions.submit_qualification"
SUBMISSION_REFUSALS = {
    400: "malformed",
    401: "unauthorized",
    403: "forbidden",
    409: "in_flight",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}
"""What a refused submission's status says (gpuq.api.submissions documents each)."""

access_log = logging.getLogger("gpuq.access")


def request_id() -> str | None:
    """The current request's id (None outside a request the hook has seen)."""
    found: str | None = g.get("gpuq_request_id")
    return found


def _start() -> None:
    given = request.headers.get(REQUEST_ID_HEADER)
    # 128 random bits as 32 hex digits, like uuid4().hex without building a UUID.
    rid = given if given is not None and SANE_REQUEST_ID.fullmatch(given) else os.urandom(16).hex()
    here = g._get_current_object()  # one proxy look-up, not one per attribute
    here.gpuq_request_id = rid
    here.gpuq_started = time.perf_counter()
    logs.REQUEST_ID.set(rid)


def _finish(response: Response) -> Response:
    here = g._get_current_object()
    # Flask types `request` as the Request it stands for; it is a LocalProxy, and each
    # attribute read through it is a look-up: read the object once.
    asked: Request = request._get_current_object()  # type: ignore[attr-defined]
    started: float | None = getattr(here, "gpuq_started", None)
    elapsed = 0.0 if started is None else time.perf_counter() - started
    rid: str | None = getattr(here, "gpuq_request_id", None)
    if rid is not None:
        response.headers[REQUEST_ID_HEADER] = rid
    rule = asked.url_rule
    route = rule.rule if rule is not None else UNMATCHED
    method = asked.method if asked.method in METHODS else "other"
    status = response.status_code
    streamed = response.is_streamed
    metrics.request_observed(route, method, status, None if streamed else elapsed)
    if status >= 400 and asked.endpoint == SUBMIT_ENDPOINT:
        metrics.submission_refused(SUBMISSION_REFUSALS.get(status, "error"))
    if access_log.isEnabledFor(logging.INFO):
        member = auth.authenticated()
        path = asked.path
        fields = {
            "method": method,
            "route": route,
            "path": path,
            "status": status,
            "duration_ms": round(elapsed * 1000, 3),
            "address": asked.remote_addr or "unknown",  # as gpuq.api.limits.client_address
            "participant": None if member is None else member.name,
        }
        if streamed:
            fields["streamed"] = True  # duration_ms is the time to the first byte
        # makeRecord and handle, as Logger.info does, less its search of the stack for the
        # caller's file and line, which no line shows (a few µs on every request).
        record = access_log.makeRecord(
            access_log.name, logging.INFO, "", 0, "%s %s %s", (method, path, status), None, extra=fields
        )
        access_log.handle(record)
    # The greenlet or thread may answer another request next (keep-alive): lines logged
    # in between must not carry this one's id. (Flask runs this hook last.)
    logs.REQUEST_ID.set(None)
    return response


def init_app(app: Flask) -> None:
    """Install the hook; call before any other `before_request` (gpuq.app does), so that
    it runs first, and its `after_request` last (Flask runs those in reverse), seeing the
    final status and headers."""
    app.before_request(_start)
    app.after_request(_finish)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def check_scraper(token: str) -> None:
    """Raise Unauthorized unless the request carries `token` as a Bearer token (when
    `token` is set), or Forbidden unless it comes from a loopback address (when not)."""
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise Unauthorized("GET /metrics needs 'Authorization: Bearer <GPUQ_METRICS_TOKEN>'")
        return
    if not _is_loopback(client_address()):
        raise Forbidden(
            "GET /metrics answers only clients on this host; set GPUQ_METRICS_TOKEN to scrape from elsewhere"
        )


@bp.get("/metrics")
@exempt
def metrics_page() -> Response:
    check_scraper(runtime().settings.metrics_token)
    body, content_type = metrics.exposition(build.version(), build.commit())
    response = Response(body, content_type=content_type)
    response.headers["Cache-Control"] = "no-store"
    return response


# Its routes in the OpenAPI document (gpuq.api.openapi assembles every module's).
OPERATIONS: spec.Operations = {
    ("/metrics", "get"): {
        "operationId": "metrics",
        "summary": "Metrics in Prometheus's text format, summed over every worker",
        "description": "Restricted: with GPUQ_METRICS_TOKEN set, send it as a Bearer token; "
        "without it, only clients on this host (loopback) are answered. Not rate limited.",
        "tags": ["service"],
        "security": [{}, {"bearer": []}],
        "responses": {
            "200": {
                "description": "Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            "401": spec.problem("GPUQ_METRICS_TOKEN is set and the request does not carry it."),
            "403": spec.problem("No token is configured and the client is not on this host."),
        },
    },
}
