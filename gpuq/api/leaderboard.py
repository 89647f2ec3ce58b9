"""GET /leaderboard?limit=10&offset=0 (exempt from rate limits)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from gpuq import ratelimit
from gpuq.api.serialize import entry
from gpuq.errors import FieldError, InvalidInput
from gpuq.leaderboard import get_leaderboard

bp = Blueprint("leaderboard", __name__)

MAX_LIMIT = 100
MAX_OFFSET = 1_000_000


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
    page = get_leaderboard().page(offset, limit)
    return jsonify(
        {
            "leaderboard": [entry(offset + i + 1, item) for i, item in enumerate(page.entries)],
            "total": page.total,
            "limit": limit,
            "offset": offset,
        }
    )
