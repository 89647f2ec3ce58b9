"""GET /board: the live leaderboard page (static HTML, CSS and JS; data from the stream)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, render_template

from gpuq import ratelimit

bp = Blueprint("board", __name__)

# Only this service's own scripts, styles and stream; nothing inline, nothing from elsewhere.
BOARD_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@bp.get("/board")
@ratelimit.exempt
def board():
    size = current_app.config["GPUQ_SETTINGS"].board_size
    response = Response(render_template("board.html", board_size=size), mimetype="text/html")
    response.headers["Content-Security-Policy"] = BOARD_CSP
    return response
