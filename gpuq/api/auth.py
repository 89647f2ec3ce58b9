"""Who is calling: `Authorization: Bearer <API key>`, read once per request.

* No header: an anonymous caller (None).
* A header that is not a Bearer key, or a key that is unknown, revoked or
  malformed: 401 with `WWW-Authenticate: Bearer`. A bad key never falls back
  to anonymous, so a typo cannot silently submit without attribution.
* Everything under /admin needs an admin's key: 401 without a key, 403 with a
  participant's, for every method and every path there (before routing, so
  that even a wrong method or path says nothing to a non-admin). Admin
  requests are outside the daily request limit (organisers' scripts must not
  lock themselves out); refused ones are answered before it is counted.
"""

from __future__ import annotations

from flask import Flask, g, request

from gpuq import participants
from gpuq.api.context import runtime
from gpuq.errors import Forbidden, InvalidInput, Unauthorized
from gpuq.participants import Member

ADMIN_PREFIX = "/admin"


def caller() -> Member | None:
    """The authenticated participant, or None without an Authorization header; raises Unauthorized."""
    if "gpuq_caller" not in g:
        try:
            g.gpuq_caller = _authenticate(request.headers.get("Authorization"))
        except Unauthorized as refused:  # kept too: a bad key costs one look-up, not one per ask
            g.gpuq_caller = refused
    if isinstance(g.gpuq_caller, Unauthorized):
        raise g.gpuq_caller
    found: Member | None = g.gpuq_caller
    return found


def authenticated() -> Member | None:
    """The participant this request was authenticated as, if `caller` was asked and the key
    was valid; never looks anything up or raises (for the access log)."""
    found = g.get("gpuq_caller")
    return found if isinstance(found, Member) else None


def _authenticate(header: str | None) -> Member | None:
    if header is None:
        return None
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("send the API key as 'Authorization: Bearer <key>'")
    with runtime().database.autocommit() as connection:
        member = participants.authenticate(connection, key.strip())
    if member is None:
        raise Unauthorized("the API key is not valid (unknown, revoked or mistyped)")
    return member


def require_participant() -> Member:
    """The caller, who must have sent a valid key; raises Unauthorized."""
    member = caller()
    if member is None:
        raise Unauthorized("this needs an API key: 'Authorization: Bearer <key>'")
    return member


def require_admin() -> Member:
    """The caller, who must be an admin; raises Unauthorized or Forbidden."""
    member = require_participant()
    if not member.is_admin:
        raise Forbidden("this needs an admin's API key")
    return member


MISPLACED_HEADERS = ("X-API-Key", "X-Api-Token", "Api-Key")
MISPLACED_PARAMETERS = ("api_key", "apikey", "key", "token", "access_token")


def refuse_misplaced_keys() -> None:
    """A key sent any other way than the Authorization header would be silently ignored
    (the request then runs anonymously); refuse it instead, saying how to send it. A key
    in the query string also ends up in proxies' and servers' logs."""
    header = next((name for name in MISPLACED_HEADERS if name in request.headers), None)
    parameter = None
    if request.query_string:  # most requests have none: do not build request.args for them
        parameter = next((name for name in MISPLACED_PARAMETERS if name in request.args), None)
    if header is not None or parameter is not None:
        where = f"the {header} header" if header is not None else f"the query parameter {parameter!r}"
        raise InvalidInput(
            f"API keys are not read from {where}: send 'Authorization: Bearer <key>'", status=400
        )


def init_app(app: Flask) -> None:
    """Install the key checks and the /admin guard; call before gpuq.api.limits.init_app
    (they must run first)."""
    app.before_request(refuse_misplaced_keys)

    @app.before_request
    def guard_admin_routes() -> None:
        path = request.path
        if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
            require_admin()
            g.gpuq_unlimited = True
