"""The application factory: `create_app(settings)` builds everything, connects nothing."""

from __future__ import annotations

import logging

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.middleware.proxy_fix import ProxyFix

from gpuq import api, leaderboard, profiles, ratelimit, web
from gpuq.api import auth
from gpuq.clock import EXTENSION as CLOCK
from gpuq.clock import Clock, utcnow
from gpuq.config import Settings
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
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        GPUQ_SETTINGS=settings,
    )
    app.json.sort_keys = False  # keep the documented field order
    app.session_interface = NoSessions()
    if settings.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)  # type: ignore[method-assign]
    app.extensions[CLOCK] = clock
    database = db.init_app(app, settings)
    client = redis.init_app(app, settings)
    leaderboard.init_app(app, settings, client, database.autocommit)
    profiles.init_app(app, settings)
    auth.init_app(app)  # before the limits: admins are outside the daily limit
    ratelimit.init_app(app, settings, client.connection_pool if client else None)
    api.init_app(app)
    app.register_blueprint(web_board.bp)
    logging.getLogger("gpuq").setLevel(logging.INFO)
    return app
