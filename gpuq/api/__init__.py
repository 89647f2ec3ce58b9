"""HTTP routes: thin handlers that turn requests into domain calls."""

from __future__ import annotations

from flask import Flask

from gpuq.api import (
    admin,
    errors,
    health,
    leaderboard,
    observe,
    openapi,
    participants,
    quota,
    runs,
    security,
    slots,
    stream,
    submissions,
)


def init_app(app: Flask) -> None:
    errors.init_app(app)
    security.init_app(app)
    leaderboard.init_app(app)
    modules = (
        health,
        submissions,
        runs,
        leaderboard,
        stream,
        quota,
        participants,
        slots,
        admin,
        observe,
        openapi,
    )
    for module in modules:
        app.register_blueprint(module.bp)
