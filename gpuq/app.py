"""The application factory: `create_app(settings)` builds everything, connects nothing.

It is the table of contents of the service: the Runtime (stores and services,
gpuq.runtime) and the HTTP parts that sit on it. It is the only place that
creates `app.extensions` keys (each module's `init_app`, called from here).
"""

from __future__ import annotations

import logging

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.middleware.proxy_fix import ProxyFix

from gpuq import api, web
from gpuq.api import auth, context, observe
from gpuq.api import limits as http_limits
from gpuq.clock import Clock, utcnow
from gpuq.config import Settings
from gpuq.runtime import Runtime, build
from gpuq.store import db, redis
from gpuq.web import board as web_board


class NoSessions(SessionInterface):
    """The API keeps no cookie sessions. Flask's default would build a signing
    serializer on every request (measured: ~14 % of GET /leaderboard's CPU)."""

    def open_session(self, app: Flask, request: Request) -> None:
        return None  # Flask then uses a NullSession

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        return None


def create_app(settings: Settings | None = None, *, clock: Clock = utcnow) -> Flask:
    """Build the app for `settings` (default: from the environment).

    Engines and pools are created here and connect lazily, so call this after
    forking (gunicorn does: the app is not preloaded).
    """
    settings = settings or Settings.from_env()
    app = Flask(
        "gpuq",
        static_folder=str(web.STATIC_DIR),
        static_url_path="/static",
        template_folder=str(web.TEMPLATES_DIR),
    )
    app.config.update(SECRET_KEY=settings.secret_key, MAX_CONTENT_LENGTH=settings.max_body_bytes)
    # Keep the documented field order (an attribute of Flask's DefaultJSONProvider, not its base).
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.session_interface = NoSessions()
    if settings.trusted_proxies:
        # Wrapping wsgi_app is Flask's documented way to add middleware; mypy sees a method.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)  # type: ignore[method-assign]
    runtime = build(settings, clock)
    app.extensions[context.EXTENSION] = runtime
    db.init_app(app, runtime.database)
    redis.init_app(app, runtime.redis)
    observe.init_app(app)  # first: request id, access log and metrics see every request
    auth.init_app(app)  # before the limits: admins are outside the daily limit
    http_limits.init_app(app, runtime.limits)
    api.init_app(app)
    app.register_blueprint(web_board.bp)
    logging.getLogger("gpuq").setLevel(logging.INFO)
    return app


def runtime_of(app: Flask) -> Runtime:
    """The Runtime an app was built with (for the server entry, the CLI and tests)."""
    found: Runtime = app.extensions[context.EXTENSION]
    return found
