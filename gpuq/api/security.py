"""Headers every response carries, decided in one place.

* `X-Content-Type-Options: nosniff` everywhere.
* `Cache-Control: no-store` on errors, on anything about one client or one
  submission, on every answer to a request that carries an API key (it may be
  about that participant: /participants/me, /slots with `me`, key rotation,
  everything under /admin) and on registration (it carries a new key); public,
  shared answers (leaderboard, health, the spec, assets) are left to the routes.
* HTML pages set their own Content-Security-Policy; any other HTML that
  leaves (none should) gets a deny-all policy.
"""

from __future__ import annotations

from flask import Flask, Response, request

PRIVATE_ENDPOINTS = {
    "submissions.submit_qualification",
    "submissions.get_submission",
    "quota.quota",
    "participants.register",
}


def add_security_headers(response: Response) -> Response:
    response.headers["X-Content-Type-Options"] = "nosniff"
    private = request.endpoint in PRIVATE_ENDPOINTS or "Authorization" in request.headers
    if response.status_code >= 400 or private or request.path.startswith("/admin"):
        response.headers["Cache-Control"] = "no-store"
    if response.mimetype == "text/html" and "Content-Security-Policy" not in response.headers:
        response.headers["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'none'"
    return response


def init_app(app: Flask) -> None:
    app.after_request(add_security_headers)
