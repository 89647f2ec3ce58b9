"""GET /board: the live leaderboard page (static HTML, CSS and JS; data from the stream)."""

from __future__ import annotations

from flask import Blueprint, Response, render_template

from gpuq.api.context import runtime
from gpuq.api.limits import exempt

bp = Blueprint("board", __name__)

# Only this service's own scripts, styles and stream; nothing inline, nothing from elsewhere.
BOARD_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@bp.get("/board")
@exempt
def board() -> Response:
    size = runtime().settings.board_size
    response = Response(render_template("board.html", board_size=size), mimetype="text/html")
    response.headers["Content-Security-Policy"] = BOARD_CSP
    return response
