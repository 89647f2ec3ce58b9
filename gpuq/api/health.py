"""GET / : liveness plus one check per dependency.

healthy: every configured dependency answers; degraded (200): the database
answers but Redis does not (the service still works, see the failure
policies), or the database answers but only reads (`"status": "read_only"`,
as on a standby after a fail-over: reads work, writes get 503); unhealthy
(503): the database does not. The checks run side by
side and each gets CHECK_SECONDS: a dependency that hangs (a stopped
process keeps its TCP connections open, so no client timeout fires) is
reported down in time, and the answer comes within about 1.5 s.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from gpuq import build
from gpuq.api import spec
from gpuq.api.context import runtime
from gpuq.api.limits import exempt
from gpuq.clock import iso_z
from gpuq.store import migrate
from gpuq.store.db import Database

bp = Blueprint("health", __name__)


CHECK_SECONDS = 1.5
# Threads, or greenlets under the gevent server. A check stuck on a hung
# dependency keeps its thread until its client gives up; four let new checks
# start meanwhile, and waiting is bounded by CHECK_SECONDS either way.
_checks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gpuq-health")


class ReadOnly(Exception):
    """The database answers but refuses writes."""


def _run_checks(checks: dict[str, Any]) -> dict[str, dict[str, Any]]:
    started = time.perf_counter()
    futures = {name: _checks.submit(check) for name, check in checks.items()}
    results: dict[str, dict[str, Any]] = {}
    for name, future in futures.items():
        remaining = max(0.0, CHECK_SECONDS - (time.perf_counter() - started))
        try:
            future.result(timeout=remaining)
        except FutureTimeout:
            results[name] = {"status": "down", "error": "Timeout"}
        except ReadOnly:
            latency = round((time.perf_counter() - started) * 1000, 2)
            results[name] = {"status": "read_only", "latency_ms": latency}
        except Exception as exc:  # any failure means "down"; the kind is enough for an operator
            results[name] = {"status": "down", "error": type(exc).__name__}
        else:
            results[name] = {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    return results


def _database(database: Database) -> None:
    """Raises when the database does not answer, ReadOnly when it answers but cannot write."""
    with database.autocommit() as connection:
        if connection.dialect.name != "postgresql":
            connection.execute(text("SELECT 1"))
        elif connection.scalar(text("SELECT current_setting('transaction_read_only')")) == "on":
            raise ReadOnly()


@bp.get("/")
@exempt
def health() -> Response:
    services = runtime()
    client = services.redis
    database = services.database
    to_run: dict[str, Any] = {"database": lambda: _database(database)}
    if client is not None:
        to_run["redis"] = client.ping
    checks = _run_checks(to_run)
    if client is None:
        checks["redis"] = {"status": "not_configured"}
    if checks["database"]["status"] == "down":
        status, code = "unhealthy", 503
    elif checks["redis"]["status"] == "down" or checks["database"]["status"] == "read_only":
        status, code = "degraded", 200
    else:
        status, code = "healthy", 200
    response = jsonify(
        {
            "status": status,
            "timestamp": iso_z(services.clock()),
            "version": build.version(),
            "commit": build.commit(),
            "checks": checks,
        }
    )
    response.status_code = code
    response.headers["Cache-Control"] = "no-store"
    return response


def _probe(reason: str | None) -> Response:
    response = jsonify({"status": "ok"} if reason is None else {"status": "not_ready", "reason": reason})
    response.status_code = 200 if reason is None else 503
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/livez")
@exempt
def livez() -> Response:
    """The process answers (asks no dependency: restart it only when this fails)."""
    return _probe(None)


@bp.get("/readyz")
@exempt
def readyz() -> Response:
    """Whether to send this worker traffic: not while it drains, nor while the database does
    not answer or lacks migrations (one bounded query)."""
    services = runtime()
    if services.draining.is_set():
        return _probe("draining: this worker is shutting down")
    try:
        with services.database.autocommit() as connection:
            current = migrate.is_current_on(connection)
    except Exception as exc:  # any failure means "not ready"; the kind is enough for an operator
        return _probe(f"database: {type(exc).__name__}")
    return _probe(None if current else "migrations: the database schema is not up to date")


# Its routes in the OpenAPI document (gpuq.api.openapi assembles every module's).
OPERATIONS: spec.Operations = {
    ("/livez", "get"): {
        "operationId": "livez",
        "summary": "Liveness: the process answers (no dependency is asked)",
        "tags": ["service"],
        "responses": {"200": spec.json_response("Probe", "Alive.")},
    },
    ("/readyz", "get"): {
        "operationId": "readyz",
        "summary": "Readiness: the database answers and is migrated, and the worker is not draining",
        "tags": ["service"],
        "responses": {
            "200": spec.json_response("Probe", "Ready for traffic."),
            "503": spec.json_response("Probe", "Not ready: `reason` says why."),
        },
    },
    ("/", "get"): {
        "operationId": "health",
        "summary": "Health and the state of each dependency",
        "tags": ["service"],
        "responses": {
            "200": spec.json_response("Health", "Healthy, or degraded (Redis down, database up)."),
            "503": spec.json_response("Health", "Unhealthy: the database does not answer."),
        },
    },
}
