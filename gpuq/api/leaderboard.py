"""GET /leaderboard?limit=10&offset=0&view=best (exempt from rate limits).

view=best (the default) shows each participant once; view=all every submission
(see gpuq.leaderboard).

Rendered pages are cached per worker under the index version they were read
at (see `Leaderboard.version`): every accepted submission and every rebuild
changes the version in Redis, so a cached page is served only while it is
still exactly what the index holds. Costs one Redis GET per request; a miss
reads and renders the page. Without a version (embedded mode, Redis down)
nothing is cached.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, current_app, json, jsonify

from gpuq.api import params, spec
from gpuq.api.context import runtime
from gpuq.api.limits import exempt
from gpuq.api.params import LEADERBOARD, choice_param, text_param
from gpuq.evidence.model import model_name
from gpuq.leaderboard import DEFAULT_VIEW, VIEWS, Page
from gpuq.leaderboard.gpus import MAX_MODEL_LENGTH
from gpuq.serialize import entry

bp = Blueprint("leaderboard", __name__)

CACHE = "gpuq.leaderboard_pages"
CACHE_PAGES = 256
PageCache = dict[tuple[str, int, int], tuple[bytes, bytes]]
"""(view, offset, limit) -> (index version, rendered body)."""


def init_app(app: Flask) -> None:
    app.extensions[CACHE] = PageCache()


@bp.get("/leaderboard")
@exempt
def leaderboard() -> Response:
    limit, offset = LEADERBOARD.read()
    view = choice_param("view", VIEWS, DEFAULT_VIEW)
    model = text_param("gpu", MAX_MODEL_LENGTH)
    if model is not None:
        return _gpu_board(model, offset, limit, view)
    board = runtime().board
    cache: PageCache = current_app.extensions[CACHE]
    version = board.version()
    cached = cache.get((view, offset, limit))
    if version is not None and cached is not None and cached[0] == version:
        return Response(cached[1], mimetype="application/json")
    page = board.page(offset, limit, view)
    body = _render(page, view, offset, limit)
    if page.version is not None:
        if len(cache) >= CACHE_PAGES:
            cache.clear()
        cache[(view, offset, limit)] = (page.version, body)
    return Response(body, mimetype="application/json")


def _gpu_board(model: str, offset: int, limit: int, view: str) -> Response:
    model = model_name(model)  # as stored: spaces collapsed
    page = runtime().gpus.page(model, offset, limit, view)
    return Response(_render(page, view, offset, limit, model), mimetype="application/json")


def _render(page: Page, view: str, offset: int, limit: int, gpu: str | None = None) -> bytes:
    """A page of a board as GET /leaderboard answers it (`gpu` names a GPU model's board)."""
    body: dict[str, Any] = {
        "leaderboard": [entry(offset + i + 1, item) for i, item in enumerate(page.entries)],
        "view": view,
        "total": page.total,
        "limit": limit,
        "offset": offset,
    }
    if gpu is not None:
        body["gpu"] = gpu
    return json.dumps(body, separators=(",", ":")).encode()


@bp.get("/gpus")
@exempt
def gpus() -> Response:
    """The GPU models with ranked measured results, most results first."""
    return jsonify({"gpus": runtime().gpus.models()})


# Its routes in the OpenAPI document (gpuq.api.openapi assembles every module's).
OPERATIONS: spec.Operations = {
    ("/leaderboard", "get"): {
        "operationId": "leaderboard",
        "summary": "The leaderboard: score descending, ties to the earlier submission",
        "tags": ["leaderboard"],
        "parameters": [
            *params.LEADERBOARD.openapi(),
            spec.VIEW,
            {
                "name": "gpu",
                "in": "query",
                "required": False,
                "description": "The board of one GPU model (as GET /gpus names it): its measured results.",
                "schema": {"type": "string", "minLength": 1, "maxLength": MAX_MODEL_LENGTH},
            },
        ],
        "responses": {
            "200": spec.json_response("LeaderboardPage", "One page of the board."),
            "400": spec.problem("A bad limit, offset, view or gpu."),
            "503": spec.DATABASE_DOWN,
            "500": spec.SERVER_ERROR,
        },
    },
    ("/gpus", "get"): {
        "operationId": "gpus",
        "summary": "The GPU models with ranked measured results (each has a board: /leaderboard?gpu=)",
        "tags": ["leaderboard"],
        "responses": {
            "200": spec.json_response("GpuModels", "Most results first."),
            "503": spec.DATABASE_DOWN,
            "500": spec.SERVER_ERROR,
        },
    },
}
