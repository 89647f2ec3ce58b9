"""GET /leaderboard?limit=10&offset=0 (exempt from rate limits).

Rendered pages are cached per worker under the index version they were read
at (see `Leaderboard.version`): every accepted submission and every rebuild
changes the version in Redis, so a cached page is served only while it is
still exactly what the index holds. Costs one Redis GET per request; a miss
reads and renders the page. Without a version (embedded mode, Redis down)
nothing is cached.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, json, request

from gpuq import ratelimit
from gpuq.errors import FieldError, InvalidInput
from gpuq.leaderboard import get_leaderboard
from gpuq.serialize import entry

bp = Blueprint("leaderboard", __name__)

MAX_LIMIT = 100
MAX_OFFSET = 1_000_000
CACHE = "gpuq.leaderboard_pages"
CACHE_PAGES = 256


def _int_param(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise InvalidInput(
            f"query parameter {name} must be a whole number from {low} to {high}",
            [FieldError(name, f"must be a whole number from {low} to {high}, got {raw[:20]!r}")],
            status=400,
        )
    return int(raw)


@bp.get("/leaderboard")
@ratelimit.exempt
def leaderboard():
    limit = _int_param("limit", 10, 1, MAX_LIMIT)
    offset = _int_param("offset", 0, 0, MAX_OFFSET)
    board = get_leaderboard()
    cache: dict[tuple[int, int], tuple[bytes, bytes]] = current_app.extensions.setdefault(CACHE, {})
    version = board.version()
    cached = cache.get((offset, limit))
    if version is not None and cached is not None and cached[0] == version:
        return Response(cached[1], mimetype="application/json")
    page = board.page(offset, limit)
    body = json.dumps(
        {
            "leaderboard": [entry(offset + i + 1, item) for i, item in enumerate(page.entries)],
            "total": page.total,
            "limit": limit,
            "offset": offset,
        },
        separators=(",", ":"),
    ).encode()
    if page.version is not None:
        if len(cache) >= CACHE_PAGES:
            cache.clear()
        cache[(offset, limit)] = (page.version, body)
    return Response(body, mimetype="application/json")
