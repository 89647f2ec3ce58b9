"""GET /board: the live leaderboard page (static HTML, CSS and JS; data from the stream).

GET /board?gpu=<model> shows one GPU model's board: the page reads it from
GET /leaderboard?gpu= whenever the stream says the board changed.
"""

from __future__ import annotations

from flask import Blueprint, Response, render_template

from gpuq.api.context import runtime
from gpuq.api.limits import exempt
from gpuq.api.params import text_param
from gpuq.evidence.model import model_name
from gpuq.leaderboard.gpus import MAX_MODEL_LENGTH

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
    model = text_param("gpu", MAX_MODEL_LENGTH)
    gpu = None if model is None else model_name(model)
    response = Response(render_template("board.html", board_size=size, gpu=gpu), mimetype="text/html")
    response.headers["Content-Security-Policy"] = BOARD_CSP
    return response
