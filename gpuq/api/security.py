"""Headers every response carries, decided in one place.

* `X-Content-Type-Options: nosniff` everywhere.
* `Cache-Control: no-store` on errors and on anything about one client or one
  submission; public, shared answers (leaderboard, health, the spec, assets)
  are left to the routes.
* HTML pages set their own Content-Security-Policy; any other HTML that
  leaves (none should) gets a deny-all policy.
"""

from __future__ import annotations

from flask import Flask, Response, request

PRIVATE_ENDPOINTS = {"submissions.submit_qualification", "submissions.get_submission", "quota.quota"}


def add_security_headers(response: Response) -> Response:
    response.headers["X-Content-Type-Options"] = "nosniff"
    if response.status_code >= 400 or request.endpoint in PRIVATE_ENDPOINTS:
        response.headers["Cache-Control"] = "no-store"
    if response.mimetype == "text/html" and "Content-Security-Policy" not in response.headers:
        response.headers["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'none'"
    return response


def init_app(app: Flask) -> None:
    app.after_request(add_security_headers)
