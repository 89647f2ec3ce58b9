"""GET / : liveness plus one check per dependency.

healthy: every configured dependency answers; degraded (200): the database
answers but Redis does not (the service still works, see the failure
policies); unhealthy (503): the database does not. Each check is bounded by
its client's timeout, so the answer comes within about 2 s even when a
dependency hangs.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, jsonify
from sqlalchemy import text

from gpuq import ratelimit
from gpuq.clock import iso_z, now
from gpuq.store.db import get_db
from gpuq.store.redis import get_redis

bp = Blueprint("health", __name__)


def _timed(check: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        check()
    except Exception as exc:  # any failure means "down"; the kind is enough for an operator
        return {"status": "down", "error": type(exc).__name__}
    return {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def _database() -> None:
    with get_db().engine.connect() as connection:
        connection.execute(text("SELECT 1"))


@bp.get("/")
@ratelimit.exempt
def health():
    checks = {"database": _timed(_database)}
    client = get_redis()
    checks["redis"] = _timed(client.ping) if client is not None else {"status": "not_configured"}
    if checks["database"]["status"] != "up":
        status, code = "unhealthy", 503
    elif checks["redis"]["status"] == "down":
        status, code = "degraded", 200
    else:
        status, code = "healthy", 200
    response = jsonify({"status": status, "timestamp": iso_z(now()), "checks": checks})
    response.status_code = code
    response.headers["Cache-Control"] = "no-store"
    return response
